package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// CreateContainer resolves the image, prepares a writable snapshot named by
// the container's ID (and a read-only one per image volume), translates the
// CRI config with the pod's and the image's into the runtime's, and creates
// the container. A failure undoes the snapshots.
func (s *RuntimeService) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (_ *runtimeapi.CreateContainerResponse, retErr error) {
	cfg := req.GetConfig()
	name := cfg.GetMetadata().GetName()
	if name == "" {
		return nil, fmt.Errorf("create container: %w: container metadata has no name", errdefs.ErrInvalidArgument)
	}
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	sbCfg := req.GetSandboxConfig()
	if sbCfg == nil {
		// The kubelet always sends it; crictl may not.
		sbCfg = &runtimeapi.PodSandboxConfig{}
		if err := readRecord(sb.Config.Annotations, annPodConfig, sbCfg); err != nil {
			return nil, fmt.Errorf("create container %s: %w", name, err)
		}
	}
	imageName, err := imageName("create container "+name, cfg.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := s.opts.Images.Get(ctx, imageName)
	if err != nil {
		return nil, fmt.Errorf("create container %s: resolve image %s: %w", name, imageName, err)
	}

	id := newID()
	var undo cleanups
	defer undo.run(ctx, &retErr)

	rootfs, err := s.opts.Images.Prepare(ctx, id, img.ID.String())
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	undo.push(func(ctx context.Context) error { return s.opts.Images.RemoveSnapshot(ctx, id) })

	imageMounts := map[string]spec.Mount{}
	for i, m := range cfg.GetMounts() {
		if m.GetImage().GetImage() == "" {
			continue
		}
		sm, err := s.imageVolume(ctx, id, i, m)
		if err != nil {
			return nil, fmt.Errorf("create container %s: %w", name, err)
		}
		undo.push(func(ctx context.Context) error { return s.opts.Images.RemoveSnapshot(ctx, imageVolumeID(id, i)) })
		imageMounts[m.GetContainerPath()] = sm
	}
	if err := prepareHostPaths(cfg.GetMounts()); err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	devices, err := resolveDevices(cfg)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}

	rc, err := s.containerConfig(specInput{
		ID:          id,
		SandboxID:   sb.ID,
		Config:      cfg,
		Sandbox:     sbCfg,
		Image:       img.Config.Config,
		AllCaps:     s.opts.AllCapabilities,
		Devices:     devices,
		ImageMounts: imageMounts,
	}, sb, img, rootfs)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", name, err)
	}
	// NRI plugins see the container's spec before it is created, and may
	// adjust it or refuse the container; plugins connecting meanwhile wait
	// until it is listed.
	defer s.nri.blockSync()()
	nc := s.nri.createContainer(sb, rc)
	rc.Adjust = nc.hook()
	c, err := s.opts.Containers.CreateContainer(ctx, rc)
	nc.done(ctx, c, err)
	if err != nil {
		return nil, fmt.Errorf("create container %s in pod %s: %w", name, sb.ID, err)
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

// containerConfig builds the runtime's container config.
func (s *RuntimeService) containerConfig(in specInput, sb *runtime.Sandbox, img *imagestore.Image, rootfs []imagestore.Mount) (runtime.ContainerConfig, error) {
	cfg := in.Config
	sc, err := containerSpec(in)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	sig, err := stopSignal(cfg, in.Image)
	if err != nil {
		return runtime.ContainerConfig{}, err
	}
	rc := runtime.ContainerConfig{
		ID:         in.ID,
		SandboxID:  sb.ID,
		Name:       cfg.GetMetadata().GetName(),
		Attempt:    cfg.GetMetadata().GetAttempt(),
		Image:      cfg.GetImage().GetImage(),
		ImageRef:   imageRef(img),
		ImageID:    img.ID.String(),
		Spec:       sc,
		Stdin:      cfg.GetStdin(),
		StdinOnce:  cfg.GetStdinOnce(),
		TTY:        cfg.GetTty(),
		StopSignal: sig,
		Labels:     cfg.GetLabels(),
	}
	for _, m := range rootfs {
		rc.Rootfs = append(rc.Rootfs, runtime.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if cfg.GetLogPath() != "" {
		if sb.Config.LogDirectory == "" {
			return runtime.ContainerConfig{}, fmt.Errorf("%w: log path %q given but the pod has no log directory", errdefs.ErrInvalidArgument, cfg.GetLogPath())
		}
		rc.LogPath = filepath.Join(sb.Config.LogDirectory, cfg.GetLogPath())
	}
	nsOpts := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	switch nsOpts.GetPid() {
	case runtimeapi.NamespaceMode_CONTAINER:
		rc.PID = runtime.NamespaceContainer
	case runtimeapi.NamespaceMode_POD:
		rc.PID = runtime.NamespacePod
	case runtimeapi.NamespaceMode_NODE:
		// Only a host-PID pod may hold a host-PID container; the pod's
		// namespace is then the host's.
		if sb.Config.Namespaces.PID != runtime.NamespaceNode {
			return runtime.ContainerConfig{}, fmt.Errorf("%w: host pid namespace asked for a container of a pod without one", errdefs.ErrInvalidArgument)
		}
		rc.PID = runtime.NamespacePod
	case runtimeapi.NamespaceMode_TARGET:
		if nsOpts.GetTargetId() == "" {
			return runtime.ContainerConfig{}, fmt.Errorf("%w: pid namespace mode TARGET without a target_id", errdefs.ErrInvalidArgument)
		}
		rc.PID, rc.PIDTarget = runtime.NamespaceTarget, nsOpts.GetTargetId()
	}
	if rc.Annotations, err = withRecord(cfg.GetAnnotations(), annContainerConfig, cfg); err != nil {
		return runtime.ContainerConfig{}, err
	}
	return rc, nil
}

// imageVolume makes a read-only snapshot of the image a CRI mount names and
// returns its mount (an overlay of the image's layers, or a bind mount of a
// single layer), narrowed to the mount's sub-path if it has one.
func (s *RuntimeService) imageVolume(ctx context.Context, id string, i int, m *runtimeapi.Mount) (_ spec.Mount, retErr error) {
	dst := m.GetContainerPath()
	if !m.GetReadonly() {
		// Image volumes are read-only by definition (KEP-4639); accepting a
		// writable one would promise what the mount does not do.
		return spec.Mount{}, fmt.Errorf("image volume on %s: %w: image volumes must be read-only", dst, errdefs.ErrInvalidArgument)
	}
	img, err := s.opts.Images.Get(ctx, m.GetImage().GetImage())
	if err != nil {
		return spec.Mount{}, fmt.Errorf("image volume on %s: %w", dst, err)
	}
	ms, err := s.opts.Images.View(ctx, imageVolumeID(id, i), img.ID.String())
	if err != nil {
		return spec.Mount{}, fmt.Errorf("image volume on %s: %w", dst, err)
	}
	defer func() {
		if retErr != nil {
			s.opts.Images.RemoveSnapshot(context.WithoutCancel(ctx), imageVolumeID(id, i))
		}
	}()
	if len(ms) != 1 {
		return spec.Mount{}, fmt.Errorf("image volume on %s: %w: snapshot has %d mounts, want 1", dst, errdefs.ErrNotImplemented, len(ms))
	}
	mnt := ms[0]
	if sub := m.GetImageSubPath(); sub != "" {
		if mnt, err = imagestore.SubPath(mnt, sub); err != nil {
			return spec.Mount{}, fmt.Errorf("image volume on %s: %w", dst, err)
		}
	}
	// The status reports the image the volume resolved to (ImageSpec
	// image_ref), which the kubelet compares with its pull.
	m.Image.ImageRef = img.ID.String()
	return spec.Mount{
		Type:        mnt.Type,
		Source:      mnt.Source,
		Options:     append(mnt.Options, "nosuid", "nodev"),
		Destination: dst,
		ReadOnly:    true,
	}, nil
}

// imageVolumeID names the read-only snapshot of a container's i-th mount.
func imageVolumeID(id string, i int) string { return id + "-iv" + strconv.Itoa(i) }

// imageRef is what CRI reports as a container's image_ref: the repo digest
// when the image came from a registry, else its ID, as containerd does.
func imageRef(img *imagestore.Image) string {
	if len(img.RepoDigests) > 0 {
		return img.RepoDigests[0]
	}
	return img.ID.String()
}

// prepareHostPaths creates missing bind-mount sources as directories, as
// the kubelet's hostPath volumes and containerd expect.
func prepareHostPaths(mounts []*runtimeapi.Mount) error {
	var paths []string
	for _, m := range mounts {
		if m.GetHostPath() != "" && m.GetImage().GetImage() == "" {
			paths = append(paths, m.GetHostPath())
		}
	}
	return spec.MakeHostDirs(paths...)
}

// resolveDevices turns the requested host devices into device nodes; a
// privileged container gets every host device, as in containerd.
func resolveDevices(cfg *runtimeapi.ContainerConfig) ([]spec.Device, error) {
	var reqs []spec.DeviceRequest
	for _, d := range cfg.GetDevices() {
		reqs = append(reqs, spec.DeviceRequest{HostPath: d.GetHostPath(), ContainerPath: d.GetContainerPath(), Permissions: d.GetPermissions()})
	}
	return spec.ResolveDevices(cfg.GetLinux().GetSecurityContext().GetPrivileged(), reqs)
}

// newID returns a container or sandbox ID: 64 random hex digits.
func newID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
