package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// cleanupTimeout bounds undo work, which runs on a context the caller's
// cancellation cannot abort.
const cleanupTimeout = time.Minute

// CreateOptions are a create request as Docker's API carries it.
type CreateOptions struct {
	// Name is the requested name; empty picks a random one.
	Name             string
	Config           *container.Config
	HostConfig       *container.HostConfig
	NetworkingConfig *dnet.NetworkingConfig
	// DefaultReadOnlyNonRecursive keeps read-only binds read-only on the
	// top mount only, as dockerd does for API versions below 1.44.
	DefaultReadOnlyNonRecursive bool
}

// CreateResult is the new container's ID and dockerd's warnings.
type CreateResult struct {
	ID       string
	Warnings []string
}

// Create makes a container: it validates the request, merges the image's
// config, takes the name (atomically: of concurrent creations with one
// name exactly one wins), records the creation as pending, makes the
// volumes, the writable layer, the sandbox and the runtime container
// (created, not started), and records the container. Any failure undoes
// every step; so does Open after a crash half-way.
func (e *Engine) Create(ctx context.Context, o CreateOptions) (_ CreateResult, retErr error) {
	if o.Config == nil {
		return CreateResult{}, invalid("config cannot be empty in order to create a container")
	}
	st := steps.Start(ctx, "docker create")
	cfg := *o.Config
	hc := &container.HostConfig{}
	if o.HostConfig != nil {
		c := *o.HostConfig
		hc = &c
	}
	warnings, err := verifySettings(&cfg, hc)
	if err != nil {
		return CreateResult{Warnings: warnings}, err
	}
	name := o.Name
	if name != "" {
		if name, err = checkName(name); err != nil {
			return CreateResult{}, err
		}
	}
	if cfg.Image == "" {
		return CreateResult{}, invalid("no image given: config.Image is empty")
	}
	img, err := e.images.Get(ctx, cfg.Image)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return CreateResult{}, errdefs.ErrNotFound.WithMessage("No such image: " + cfg.Image)
		}
		return CreateResult{}, fmt.Errorf("create container: image %s: %w", cfg.Image, err)
	}
	st.Done("checks+image")
	mergeImage(&cfg, img.Config.Config, configExt(img.RawConfig))
	path, args, err := command(&cfg)
	if err != nil {
		return CreateResult{}, err
	}
	from, err := e.volumesFrom(hc.VolumesFrom)
	if err != nil {
		return CreateResult{}, err
	}
	mounts, err := planMounts(&cfg, hc, from)
	if err != nil {
		return CreateResult{}, err
	}
	if o.DefaultReadOnlyNonRecursive {
		for i := range mounts {
			if mp := &mounts[i]; mp.Type == mount.TypeBind && !mp.RW && !mp.ReadOnlyForceRecursive {
				mp.ReadOnlyNonRecursive = true
			}
		}
	}
	netKind := classifyNetwork(hc.NetworkMode)
	var netTarget *ctr
	switch netKind {
	case netContainer:
		if netTarget, err = e.lookupJoined(hc.NetworkMode.ConnectedContainer()); err != nil {
			return CreateResult{}, err
		}
	case netBridge:
		if e.net == nil {
			if m := string(hc.NetworkMode); m != dnet.NetworkDefault && m != dnet.NetworkBridge {
				return CreateResult{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", m))
			}
		}
	}
	if len(hc.Links) > 0 && e.net == nil {
		return CreateResult{}, errdefs.ErrNotImplemented.WithMessage("--link needs the standalone networks, which this berthd runs without")
	}
	ipcTarget, err := e.ipcDonor(hc.IpcMode)
	if err != nil {
		return CreateResult{}, err
	}
	var pidTarget string
	if hc.PidMode.IsContainer() {
		t, err := e.lookupJoined(hc.PidMode.Container())
		if err != nil {
			return CreateResult{}, err
		}
		pidTarget = t.rec.ID
	}
	if hc.LogConfig, err = e.logs.Resolve(hc.LogConfig); err != nil {
		return CreateResult{}, err
	}

	id := newID()
	for i := range mounts {
		if mounts[i].Anonymous {
			mounts[i].Name = newID()
		}
		if mounts[i].Type == mount.TypeImage {
			mounts[i].Snapshot = imageMountSnapshot(id, i)
		}
	}
	e.mu.Lock()
	name, err = e.reserveNameLocked(name, id)
	if err != nil {
		e.mu.Unlock()
		return CreateResult{}, err
	}
	c := &ctr{changed: make(chan struct{}), rec: record{
		ID: id, Name: name, Created: time.Now().UTC(),
		Path: path, Args: args, Config: &cfg, HostConfig: hc, NetworkingConfig: o.NetworkingConfig,
		ImageID: img.ID.String(), Mounts: mounts,
		Pending: true,
	}}
	lc := logContainer(e.containerDir(id), c.rec)
	c.rec.LogPath = logs.LogPath(lc)
	runtimeLogPath, logCfg, err := e.logs.RuntimeLog(lc)
	if err != nil {
		e.mu.Lock()
		delete(e.containers, id)
		e.releaseNameLocked(name, id)
		e.mu.Unlock()
		return CreateResult{}, err
	}
	e.containers[id] = c
	e.mu.Unlock()
	c.op.Lock()
	defer c.op.Unlock()

	// early is the networks' attachment made while the runtime creates
	// the container (see earlyAttach); it ends before the creation does.
	var early chan error
	defer func() {
		if early != nil {
			<-early
		}
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := e.undoCreate(cctx, c); err != nil {
			logctx.From(ctx).WarnContext(ctx, "undo container creation", "id", id, "error", err)
		}
	}()
	if err := os.MkdirAll(e.containerDir(id), 0o711); err != nil {
		return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
	}
	// Written before anything is made: Open undoes what this lists.
	if err := e.note(c); err != nil {
		return CreateResult{}, err
	}
	st.Done("save-pending")

	// The network manager checks the request's networks, ports, DNS and
	// hosts entries as dockerd does, and records them for the start.
	if e.net != nil {
		nc, err := network.DockerContainer(id, name, &cfg, hc, o.NetworkingConfig)
		if err != nil {
			return CreateResult{}, err
		}
		if netKind == netContainer {
			nc.Mode = "container:" + netTarget.rec.ID
		}
		if err := e.net.Register(ctx, nc); err != nil {
			return CreateResult{}, err
		}
	}

	st.Done("network-register")
	// Volumes: named ones are made if missing, anonymous ones always.
	for i := range mounts {
		mp := &mounts[i]
		if mp.Type != mount.TypeVolume {
			// -v creates a missing host directory; --mount only with
			// create-mountpoint.
			if mp.Type == mount.TypeBind && (mp.Spec == nil || (mp.Spec.BindOptions != nil && mp.Spec.BindOptions.CreateMountpoint)) {
				if err := spec.MakeHostDirs(mp.Source); err != nil {
					return CreateResult{}, err
				}
			}
			continue
		}
		if mp.From != "" {
			// Another container's volume: it must still be there.
			v, err := e.volumes.Get(mp.Name)
			if err != nil {
				return CreateResult{}, err
			}
			e.volumes.Ref(mp.Name, id)
			mp.Source = v.Mountpoint
			continue
		}
		labels := map[string]string{}
		if mp.Anonymous {
			labels[volume.AnonymousLabel] = ""
		}
		if mp.Spec != nil && mp.Spec.VolumeOptions != nil {
			for k, v := range mp.Spec.VolumeOptions.Labels {
				labels[k] = v
			}
		}
		_, getErr := e.volumes.Get(mp.Name)
		v, err := e.volumes.Create(ctx, volume.CreateOptions{Name: mp.Name, Labels: labels})
		if err != nil {
			return CreateResult{}, err
		}
		if getErr != nil {
			e.events.Publish(events.Message{Type: events.VolumeEventType, Action: events.ActionCreate, Actor: events.Actor{ID: v.Name, Attributes: map[string]string{"driver": v.Driver}}})
		}
		e.volumes.Ref(mp.Name, id)
		mp.Source = v.Mountpoint
	}
	if mp := slices.IndexFunc(mounts, func(m MountPoint) bool { return m.Type == mount.TypeVolume && m.Subpath != "" }); mp >= 0 {
		m := mounts[mp]
		p, err := securejoin.SecureJoin(m.Source, m.Subpath)
		if err != nil {
			return CreateResult{}, fmt.Errorf("volume %s subpath %s: %w", m.Name, m.Subpath, err)
		}
		if _, err := os.Stat(p); err != nil {
			return CreateResult{}, invalid("cannot access path %s: %v", p, err)
		}
	}

	if err := e.viewImageMounts(ctx, mounts); err != nil {
		return CreateResult{}, err
	}
	st.Done("volumes")
	rootfs, err := e.images.Prepare(ctx, id, img.ID.String())
	if err != nil {
		return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
	}
	st.Done("snapshot")

	sb, err := e.sandboxConfig(ctx, id, &cfg, hc, netKind, netTarget)
	if err != nil {
		return CreateResult{}, err
	}
	if ipcTarget != nil {
		e.mu.Lock()
		if ipcTarget.rec.HostConfig.IpcMode.IsHost() {
			sb.Namespaces.IPC = runtime.NamespaceNode
		} else {
			sb.Namespaces.IPC, sb.IPCTarget = runtime.NamespaceTarget, ipcTarget.rec.ID
		}
		e.mu.Unlock()
	}
	box, err := e.rt.CreateSandbox(ctx, sb)
	if err != nil {
		return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
	}
	st.Done("sandbox")
	if earlyAttachable(hc, netKind) && e.net != nil {
		early = make(chan error, 1)
		req := network.AttachRequest{ID: id, NetNS: box.NetNSPath, HostsPath: box.HostsPath, ResolvConfPath: box.ResolvConfPath}
		go func() {
			_, err := e.net.Attach(context.WithoutCancel(ctx), req)
			early <- err
		}()
	}

	devices, err := e.devices(hc)
	if err != nil {
		return CreateResult{}, err
	}
	in := specInput{
		ID: id, Config: &cfg, HostConfig: hc, Mounts: mounts,
		AllCaps: e.allCaps(), Devices: devices, InitBinary: e.cfg.InitBinary,
		RecursiveReadOnly: recursiveReadOnly(),
	}
	if sec, _ := parseSecurityOpts(hc.SecurityOpt); sec.seccomp != "" && sec.seccomp != "unconfined" && sec.seccomp != "builtin" {
		in.SeccompProfile = filepath.Join(e.containerDir(id), "seccomp.json")
		if err := atomicfile.WriteFile(in.SeccompProfile, []byte(sec.seccomp), 0o600); err != nil {
			return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
		}
	}
	sc, err := containerSpec(in)
	if err != nil {
		return CreateResult{}, err
	}
	// A slave or shared bind needs a source mount that can give it, as
	// dockerd checks.
	if err := spec.CheckPropagation(sc.Mounts); err != nil {
		return CreateResult{}, invalid("%s", strings.TrimSuffix(err.Error(), ": "+errdefs.ErrFailedPrecondition.Error()))
	}
	if netKind == netContainer {
		// The network's owner's /etc/hosts and resolv.conf, as Docker.
		t, err := e.rt.Sandbox(netTarget.rec.ID)
		if err != nil {
			return CreateResult{}, fmt.Errorf("create container %s: network container: %w", id, err)
		}
		sc.Files = spec.Files{HostsPath: t.HostsPath, ResolvConfPath: t.ResolvConfPath, HostnamePath: box.HostnamePath}
	}
	stopSig, err := parseSignal(cmpOr(cfg.StopSignal, "SIGTERM"))
	if err != nil {
		return CreateResult{}, err
	}
	rc := runtime.ContainerConfig{
		ID: id, SandboxID: id, Name: name,
		Image: cfg.Image, ImageRef: imageRef(img), ImageID: img.ID.String(),
		Spec:    sc,
		LogPath: runtimeLogPath,
		Log:     logCfg,
		Stdin:   cfg.OpenStdin, StdinOnce: cfg.StdinOnce, TTY: cfg.Tty,
		StopSignal: stopSig,
		Labels:     cfg.Labels,
		PID:        runtime.NamespaceContainer,
	}
	switch {
	case hc.PidMode.IsHost():
		rc.PID = runtime.NamespaceNode
	case pidTarget != "":
		rc.PID, rc.PIDTarget = runtime.NamespaceTarget, pidTarget
	}
	for _, m := range rootfs {
		rc.Rootfs = append(rc.Rootfs, runtime.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	st.Done("spec")
	rtc, err := e.rt.CreateContainer(ctx, rc)
	if errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) {
		return CreateResult{}, specError(id, err)
	}
	if err != nil {
		return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
	}
	st.Done("runtime-create")
	if err := prepareRootfs(filepath.Join(rtc.Bundle, "rootfs"), &cfg, mounts); err != nil {
		return CreateResult{}, fmt.Errorf("create container %s: %w", id, err)
	}

	if early != nil {
		if err := <-early; err != nil {
			// The start attaches then, and says what fails.
			logctx.From(ctx).DebugContext(ctx, "attach the networks during the creation", "id", id, "error", err)
		}
		early = nil
		st.Done("early-attach")
	}
	e.mu.Lock()
	c.rec.Mounts = mounts
	c.rec.HostsPath, c.rec.ResolvConfPath, c.rec.HostnamePath = sc.Files.HostsPath, sc.Files.ResolvConfPath, sc.Files.HostnamePath
	if c.rec.HostsPath == "" {
		c.rec.HostsPath, c.rec.ResolvConfPath, c.rec.HostnamePath = box.HostsPath, box.ResolvConfPath, box.HostnamePath
	}
	c.rec.Pending = false
	e.mu.Unlock()
	if err := e.save(c); err != nil {
		return CreateResult{}, err
	}
	st.Done("save")
	st.Log("id", id)
	e.log(c, events.ActionCreate, nil)
	if warnings == nil {
		warnings = []string{}
	}
	return CreateResult{ID: id, Warnings: warnings}, nil
}

// sandboxConfig is the container's one-container sandbox.
func (e *Engine) sandboxConfig(ctx context.Context, id string, cfg *container.Config, hc *container.HostConfig, kind networkKind, target *ctr) (runtime.SandboxConfig, error) {
	sb := runtime.SandboxConfig{
		ID: id, Name: id, Namespace: "engine",
		Hostname:     hostname(id, cfg),
		CgroupParent: hc.CgroupParent,
		Sysctls:      hc.Sysctls,
		Privileged:   hc.Privileged,
		ShmSize:      hc.ShmSize,
		Namespaces:   runtime.SandboxNamespaces{Network: runtime.NamespacePod, IPC: runtime.NamespacePod, PID: runtime.NamespaceContainer},
	}
	if hc.IpcMode.IsHost() {
		sb.Namespaces.IPC = runtime.NamespaceNode
	}
	if hc.UTSMode.IsHost() {
		sb.Namespaces.UTS = runtime.NamespaceNode
	}
	hostResolv, _ := os.ReadFile("/etc/resolv.conf")
	switch kind {
	case netHost:
		sb.Namespaces.Network = runtime.NamespaceNode
		host, _ := os.Hostname()
		if cfg.Hostname == "" {
			sb.Hostname = host
			cfg.Hostname = host
		}
	case netContainer:
		sb.Namespaces.Network = runtime.NamespaceTarget
		sb.NetworkTarget = target.rec.ID
		e.mu.Lock()
		sb.Hostname = hostname(target.rec.ID, target.rec.Config)
		e.mu.Unlock()
		cfg.Hostname = sb.Hostname
		return sb, nil
	}
	sb.DNS = dnsConfig(hc, hostResolv, kind == netHost)
	hosts, err := extraHosts(hc, "")
	if err != nil {
		return sb, err
	}
	sb.Hosts = hosts
	_ = ctx
	return sb, nil
}

// devices resolves --device and, with --privileged, every host device.
func (e *Engine) devices(hc *container.HostConfig) ([]spec.Device, error) {
	var reqs []spec.DeviceRequest
	for _, d := range hc.Devices {
		reqs = append(reqs, spec.DeviceRequest{HostPath: d.PathOnHost, ContainerPath: cmpOr(d.PathInContainer, d.PathOnHost), Permissions: cmpOr(d.CgroupPermissions, "rwm")})
	}
	out, err := spec.ResolveDevices(hc.Privileged, reqs)
	if err != nil && (errdefs.IsNotFound(err) || errors.Is(err, os.ErrNotExist)) {
		// dockerd's words for a device that is not there.
		for _, d := range hc.Devices {
			if _, serr := os.Stat(d.PathOnHost); serr != nil {
				return nil, invalid("error gathering device information while adding custom device %q: no such file or directory", d.PathOnHost)
			}
		}
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// prepareRootfs readies the mounted root filesystem before the first
// start: the working directory exists (Docker creates it), and empty
// volumes receive the image's content at their mount point.
func prepareRootfs(rootfs string, cfg *container.Config, mounts []MountPoint) error {
	if cfg.WorkingDir != "" && cfg.WorkingDir != "/" {
		p, err := securejoin.SecureJoin(rootfs, cfg.WorkingDir)
		if err != nil {
			return fmt.Errorf("working directory %s: %w", cfg.WorkingDir, err)
		}
		if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("create working directory %s: %w", cfg.WorkingDir, err)
			}
		}
	}
	for _, mp := range mounts {
		if mp.Type != mount.TypeVolume || mp.NoCopy || mp.Subpath != "" {
			continue
		}
		src, err := securejoin.SecureJoin(rootfs, mp.Destination)
		if err != nil {
			continue
		}
		if _, err := volume.CopyUp(src, mp.Source); err != nil {
			return fmt.Errorf("volume %s: %w", mp.Name, err)
		}
	}
	return nil
}

// undoCreate removes what a creation made, in reverse, tolerating what
// is not there; the record and the name go last.
func (e *Engine) undoCreate(ctx context.Context, c *ctr) error {
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	var errs []error
	if e.net != nil {
		if err := e.net.Unregister(ctx, rec.ID); err != nil {
			errs = append(errs, err)
		}
	}
	if err := e.rt.RemoveContainer(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := e.rt.RemoveSandbox(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := e.images.RemoveSnapshot(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := e.removeImageMounts(ctx, rec.Mounts); err != nil {
		errs = append(errs, err)
	}
	for _, mp := range rec.Mounts {
		if mp.Type != mount.TypeVolume {
			continue
		}
		e.volumes.Unref(mp.Name, rec.ID)
		if mp.Anonymous {
			if err := e.volumes.Remove(ctx, mp.Name, volume.RemoveOptions{Force: true}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := removeRecord(e.containerDir(rec.ID)); err != nil {
		return err
	}
	e.mu.Lock()
	delete(e.containers, rec.ID)
	e.releaseNameLocked(rec.Name, rec.ID)
	c.removed = true
	e.mu.Unlock()
	return nil
}

// configExt reads Docker's additions to an image config (HEALTHCHECK,
// ONBUILD, SHELL) from the raw config blob.
func configExt(raw []byte) dockerspec.DockerOCIImageConfigExt {
	var c struct {
		Config dockerspec.DockerOCIImageConfigExt `json:"config"`
	}
	_ = json.Unmarshal(raw, &c)
	return c.Config
}

// imageRef is the image's repo digest when it came from a registry, else
// its ID.
func imageRef(img *imagestore.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID.String()
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// specError is the runtime's refusal of a container's spec (a user or
// group the image lacks) as a 400 that says only the cause, as dockerd's:
// a 404 would make the CLI take the image for missing and pull it.
func specError(id string, err error) error {
	msg := err.Error()
	for _, p := range []string{"create container " + id + ": ", "generate spec for container " + id + ": "} {
		msg = strings.TrimPrefix(msg, p)
	}
	for _, s := range []string{": " + errdefs.ErrNotFound.Error(), ": " + errdefs.ErrInvalidArgument.Error()} {
		msg = strings.TrimSuffix(msg, s)
	}
	return errdefs.ErrInvalidArgument.WithMessage(msg)
}

// earlyAttachable says whether a creation attaches the container's
// networks while the runtime creates the container, rather than at its
// start as dockerd does: the CNI ADD (tens of milliseconds) then overlaps
// the shim's creation, off the path of docker run. Only for networks of
// the container's own without published ports (whose rules would serve a
// container not yet started, and whose conflicts dockerd reports at the
// start) and without links. Inspect shows a created container's endpoint
// as dockerd does, empty, until its first start.
func earlyAttachable(hc *container.HostConfig, kind networkKind) bool {
	return kind == netBridge && len(hc.PortBindings) == 0 && !hc.PublishAllPorts && len(hc.Links) == 0
}
