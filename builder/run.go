package builder

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// secretEnvPath is where a RUN with env= secrets finds the script that
// exports them: under /dev, a tmpfs of the container's own, so that not even
// the mount point reaches the step's layer.
const secretEnvPath = "/dev/.berth-secret-env"

// runArgs turns a RUN's command line into the process's argv, heredocs
// included, as BuildKit does: a lone heredoc is the script (run directly
// when it has a #! line), other heredocs are handed to the shell.
func (bd *build) runArgs(s *state, c *instructions.RunCommand) (args []string, script *string, err error) {
	args = c.CmdLine
	if len(c.Files) > 0 {
		if len(args) != 1 || !c.PrependShell {
			return nil, nil, fmt.Errorf("parsing produced an invalid run command: %v", args)
		}
		if h := parser.MustParseHeredoc(args[0]); h != nil {
			data := c.Files[0].Data
			if c.Files[0].Chomp {
				data = parser.ChompHeredocContent(data)
			}
			if strings.HasPrefix(data, "#!") {
				return []string{path.Join("/dev/pipes", c.Files[0].Name)}, &data, nil
			}
			args = []string{data}
		} else {
			var b strings.Builder
			b.WriteString(args[0])
			for _, f := range c.Files {
				b.WriteByte('\n')
				b.WriteString(f.Data)
				b.WriteString(f.Name)
			}
			args = []string{b.String()}
		}
	}
	if c.PrependShell {
		args = s.withShell(args)
	}
	return args, nil, nil
}

// runCommandString is RUN's history entry: the build ARGs in scope, then
// the command line, as BuildKit writes it.
func runCommandString(args []string, s *state) string {
	var env []string
	idx := map[string]int{}
	for _, a := range s.args {
		v, ok := s.env.Get(a.Key)
		if !ok {
			v = a.ValueString()
		}
		if i, ok := idx[a.Key]; ok {
			env[i] = a.Key + "=" + v
			continue
		}
		idx[a.Key] = len(env)
		env = append(env, a.Key+"="+v)
	}
	if len(env) > 0 {
		env = append([]string{fmt.Sprintf("|%d", len(env))}, env...)
	}
	return strings.Join(append(env, args...), " ")
}

// mountKey is what a RUN mount contributes to the step's cache key: its
// spec (never a secret's value) and, for a bind mount, the content of its
// source.
type mountKey struct {
	Type, From, Source, Target, ID, Sharing, Env string
	ReadOnly, Required                           bool
	Size                                         int64
	Mode, UID, GID                               *uint64
	Content                                      string
}

func (bd *build) runRun(ctx context.Context, s *state, c *instructions.RunCommand) error {
	args, script, err := bd.runArgs(s, c)
	if err != nil {
		return err
	}
	network := instructions.GetNetwork(c)
	switch network {
	case "", NetworkDefault:
		network = bd.network
	case NetworkHost, NetworkNone:
	case NetworkBridge:
		if bd.b.net == nil {
			return fmt.Errorf("RUN --network=%s: no bridge network for builds here: %w", network, errdefs.ErrNotImplemented)
		}
	default:
		return fmt.Errorf("RUN --network=%s: %w", network, errdefs.ErrNotImplemented)
	}
	if s.arch != "" && s.arch != bd.host.Arch {
		return fmt.Errorf("RUN in a linux/%s stage: only the host's architecture (%s) can run here (no emulation): %w", s.arch, bd.host.Arch, errdefs.ErrNotImplemented)
	}
	if sec := instructions.GetSecurity(c); sec == "insecure" {
		return fmt.Errorf("RUN --security=insecure: privileged build steps are not served: %w", errdefs.ErrNotImplemented)
	}
	mounts := instructions.GetMounts(c)
	var keys []mountKey
	for _, m := range mounts {
		mk := mountKey{Type: string(m.Type), From: m.From, Source: m.Source, Target: m.Target, ID: m.CacheID,
			Sharing: string(m.CacheSharing), ReadOnly: m.ReadOnly, Required: m.Required, Size: m.SizeLimit,
			Mode: m.Mode, UID: m.UID, GID: m.GID}
		if m.Env != nil {
			mk.Env = *m.Env
		}
		if m.Type == instructions.MountTypeBind {
			if m.From == "" {
				rel := strings.TrimLeft(path.Clean("/"+m.Source), "/")
				if rel == "" {
					rel = "."
				}
				sum, err := bd.ctxfs.checksum(rel, true, bd.ignore, nil)
				if err != nil {
					return fmt.Errorf("RUN --mount=type=bind,source=%s: %w", m.Source, err)
				}
				mk.Content = sum.String()
			} else {
				layers, err := bd.fromLayers(ctx, m.From)
				if err != nil {
					return err
				}
				mk.Content = "from:" + topChain(layers).String()
			}
		}
		keys = append(keys, mk)
	}
	key := stepKey(s.key, "RUN", args, script, keys, network, s.img.Config.WorkingDir, s.img.Config.User)
	hit, err := bd.cached(ctx, s, key)
	if err != nil {
		return err
	}
	if hit {
		bd.emit(ctx, Event{Kind: EventCached})
		return bd.done(ctx, s)
	}
	l, err := bd.exec(ctx, s, args, script, mounts, network)
	if err != nil {
		return err
	}
	if l != nil {
		s.layers = append(s.layers, *l)
	}
	s.workdirOK = true
	s.addHistory("RUN "+runCommandString(args, s)+" # buildkit", l != nil, time.Now())
	s.key = key
	if err := bd.remember(s); err != nil {
		return err
	}
	return bd.done(ctx, s)
}

// execMounts are the mounts of one RUN and what undoes them.
type execMounts struct {
	mounts   []spec.Mount
	targets  []string
	env      map[string][]byte
	cleanups []func()
}

func (em *execMounts) cleanup() {
	for i := len(em.cleanups) - 1; i >= 0; i-- {
		em.cleanups[i]()
	}
	em.cleanups = nil
}

// runMounts prepares a RUN's --mount list.
func (bd *build) runMounts(ctx context.Context, s *state, mounts []*instructions.Mount) (*execMounts, error) {
	em := &execMounts{env: map[string][]byte{}}
	wd := s.img.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	for _, m := range mounts {
		target := m.Target
		if target != "" && !path.IsAbs(target) {
			target = path.Join(wd, target)
		}
		if target != "" {
			target = path.Clean(target)
		}
		if target == "/" {
			return em, fmt.Errorf("invalid mount target %q", m.Target)
		}
		switch m.Type {
		case instructions.MountTypeSecret:
			id := m.CacheID
			if m.Source != "" {
				id = m.Source
			}
			if id == "" {
				if target == "" {
					return em, fmt.Errorf("secret mount: one of source, target required")
				}
				id = path.Base(target)
			}
			v, ok := bd.secrets.get(id)
			if !ok {
				if m.Required {
					return em, fmt.Errorf("secret %s: required but not provided (berth build --secret id=%s,src=FILE): %w", id, id, errdefs.ErrInvalidArgument)
				}
				continue // BuildKit's rule: an absent optional secret is no mount
			}
			if m.Env != nil {
				em.env[*m.Env] = v
				if m.Target == "" {
					continue
				}
			}
			if target == "" {
				target = "/run/secrets/" + path.Base(id)
			}
			mode, uid, gid := os.FileMode(0o400), 0, 0
			if m.Mode != nil {
				mode = os.FileMode(*m.Mode & 0o777)
			}
			if m.UID != nil {
				uid = int(*m.UID)
			}
			if m.GID != nil {
				gid = int(*m.GID)
			}
			p, rm, err := bd.secrets.file(v, mode, uid, gid)
			if err != nil {
				return em, err
			}
			em.cleanups = append(em.cleanups, rm)
			em.mounts = append(em.mounts, spec.Mount{Source: p, Destination: target, Type: "bind", ReadOnly: true, Options: []string{"nosuid", "nodev", "noexec"}})
			em.targets = append(em.targets, target)
		case instructions.MountTypeCache:
			id := m.CacheID
			if id == "" {
				id = target
			}
			sp := cacheSpec{id: id, sharing: string(m.CacheSharing), mode: 0o755}
			if sp.sharing == "" {
				sp.sharing = "shared"
			}
			if m.Mode != nil {
				sp.mode = os.FileMode(*m.Mode & 0o777)
			}
			if m.UID != nil {
				sp.uid = int(*m.UID)
			}
			if m.GID != nil {
				sp.gid = int(*m.GID)
			}
			if m.From != "" {
				root, release, err := bd.mountSource(ctx, m.From, m.Source)
				if err != nil {
					return em, err
				}
				em.cleanups = append(em.cleanups, release)
				sp.seed = root
			}
			dir, release, err := bd.b.cacheMounts.acquire(ctx, sp, func() (string, error) { return bd.tmpDir("cache") })
			if err != nil {
				return em, err
			}
			em.cleanups = append(em.cleanups, release)
			em.mounts = append(em.mounts, spec.Mount{Source: dir, Destination: target, Type: "bind", ReadOnly: m.ReadOnly})
			em.targets = append(em.targets, target)
		case instructions.MountTypeTmpfs:
			size := m.SizeLimit
			opts := []string{"nosuid", "nodev", "mode=1777"}
			if size > 0 {
				opts = append(opts, fmt.Sprintf("size=%d", size))
			}
			em.mounts = append(em.mounts, spec.Mount{Source: "tmpfs", Destination: target, Type: "tmpfs", Options: opts})
			em.targets = append(em.targets, target)
		case instructions.MountTypeBind:
			var src string
			if m.From == "" {
				// A mount needs the context as a directory.
				if err := bd.materializeContext(ctx); err != nil {
					return em, err
				}
				rfd, err := openRoot(bd.ctxDir)
				if err != nil {
					return em, err
				}
				fd, err := inRoot(rfd, m.Source, unix.O_PATH)
				unix.Close(rfd)
				if err != nil {
					return em, fmt.Errorf("bind mount source %q: %w", m.Source, err)
				}
				// The resolved path, so that a symlink in the context
				// cannot point the mount outside it.
				p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
				unix.Close(fd)
				if err != nil {
					return em, err
				}
				src = p
			} else {
				root, release, err := bd.mountSource(ctx, m.From, m.Source)
				if err != nil {
					return em, err
				}
				em.cleanups = append(em.cleanups, release)
				src = root
			}
			if !m.ReadOnly {
				// Writes to a read-write bind mount are dropped after
				// the step: an overlay with a throwaway upper dir.
				ov, err := bd.throwawayOverlay(src)
				if err != nil {
					return em, err
				}
				em.cleanups = append(em.cleanups, func() { unmountAll(ov); os.RemoveAll(filepath.Dir(ov)) })
				src = ov
			}
			em.mounts = append(em.mounts, spec.Mount{Source: src, Destination: target, Type: "bind", ReadOnly: m.ReadOnly})
			em.targets = append(em.targets, target)
		case instructions.MountTypeSSH:
			return em, fmt.Errorf("RUN --mount=type=ssh: SSH agent forwarding: %w", errdefs.ErrNotImplemented)
		default:
			return em, fmt.Errorf("RUN --mount=type=%s: %w", m.Type, errdefs.ErrNotImplemented)
		}
	}
	return em, nil
}

// mountSource mounts a stage or an image read-only and returns the path of
// sub inside it.
func (bd *build) mountSource(ctx context.Context, from, sub string) (string, func(), error) {
	layers, err := bd.fromLayers(ctx, from)
	if err != nil {
		return "", func() {}, err
	}
	root, release, err := bd.viewLayers(ctx, layers)
	if err != nil {
		return "", func() {}, err
	}
	rfd, err := openRoot(root)
	if err != nil {
		release()
		return "", func() {}, err
	}
	defer unix.Close(rfd)
	fd, err := inRoot(rfd, sub, unix.O_PATH)
	if err != nil {
		release()
		return "", func() {}, fmt.Errorf("mount source %q in %s: %w", sub, from, err)
	}
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	unix.Close(fd)
	if err != nil {
		release()
		return "", func() {}, err
	}
	return p, release, nil
}

// throwawayOverlay mounts an overlay of dir with a temporary upper dir.
func (bd *build) throwawayOverlay(dir string) (string, error) {
	base, err := bd.tmpDir("rw")
	if err != nil {
		return "", err
	}
	upper, work, mnt := filepath.Join(base, "upper"), filepath.Join(base, "work"), filepath.Join(base, "mnt")
	for _, d := range []string{upper, work, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return "", err
		}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("a read-write bind mount of a file (%s) is not supported: %w", dir, errdefs.ErrNotImplemented)
	}
	opts := "lowerdir=" + dir + ",upperdir=" + upper + ",workdir=" + work
	if err := unix.Mount("overlay", mnt, "overlay", 0, opts); err != nil {
		return "", fmt.Errorf("mount a writable layer on %s: %w", dir, err)
	}
	return mnt, nil
}

// etcFiles writes the RUN steps' /etc/hosts, /etc/resolv.conf and
// /etc/hostname on the build's tmpfs.
func (bd *build) etcFiles(hostname, network string) (spec.Files, error) {
	dir := filepath.Join(bd.stateDir, "etc-"+hostname)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return spec.Files{}, err
	}
	var hosts bytes.Buffer
	if network == NetworkHost {
		b, _ := os.ReadFile("/etc/hosts")
		hosts.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			hosts.WriteByte('\n')
		}
	} else {
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	}
	fmt.Fprintf(&hosts, "127.0.0.1\t%s\n", hostname)
	for _, h := range bd.opts.ExtraHosts {
		name, ip, ok := strings.Cut(h, ":")
		if !ok {
			return spec.Files{}, fmt.Errorf("extra host %q: want name:ip: %w", h, errdefs.ErrInvalidArgument)
		}
		if ip == "host-gateway" {
			ip = "127.0.0.1"
		}
		fmt.Fprintf(&hosts, "%s\t%s\n", ip, name)
	}
	resolv, _ := os.ReadFile("/etc/resolv.conf")
	f := spec.Files{
		HostsPath:      filepath.Join(dir, "hosts"),
		ResolvConfPath: filepath.Join(dir, "resolv.conf"),
		HostnamePath:   filepath.Join(dir, "hostname"),
	}
	for p, b := range map[string][]byte{f.HostsPath: hosts.Bytes(), f.ResolvConfPath: resolv, f.HostnamePath: []byte(hostname + "\n")} {
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return spec.Files{}, err
		}
	}
	return f, nil
}

// exec runs one RUN step as a container of the runtime on a snapshot of
// the state and commits its changes (nil when it changed nothing).
func (bd *build) exec(ctx context.Context, s *state, args []string, script *string, mounts []*instructions.Mount, network string) (_ *imagestore.Layer, retErr error) {
	id := newID()
	tm := steps.Start(ctx, "RUN step")
	defer tm.Log("container", id)
	snap, held := bd.b.newSnapshot()
	defer held()
	rootfs, err := bd.b.images.PrepareBuild(ctx, snap, s.layers)
	if err != nil {
		return nil, err
	}
	tm.Done("snapshot")
	defer func() {
		if retErr != nil {
			_ = bd.b.images.RemoveSnapshot(context.WithoutCancel(ctx), snap)
		}
	}()
	lowers, upper := overlayDirs(rootfs)
	wd := s.img.Config.WorkingDir
	if wd == "" {
		wd = "/"
	}
	if found, sure := existsInLowers(lowers, wd); !s.workdirOK && wd != "/" && !found && sure {
		// runc needs the working dir; BuildKit makes it too.
		if err := mkdirInRoot(upper, wd, 0o755, nil); err != nil {
			return nil, err
		}
	}
	em, err := bd.runMounts(ctx, s, mounts)
	defer em.cleanup()
	if err != nil {
		return nil, err
	}
	env := append([]string(nil), s.env...)
	for k, v := range bd.buildArgs {
		if proxyArgs[k] {
			if _, ok := envList(env).Get(k); !ok {
				env = append(env, k+"="+v)
			}
		}
	}
	if script != nil {
		p, rm, err := bd.secrets.file([]byte(*script), 0o755, 0, 0)
		if err != nil {
			return nil, err
		}
		em.cleanups = append(em.cleanups, rm)
		em.mounts = append(em.mounts, spec.Mount{Source: p, Destination: args[0], Type: "bind", ReadOnly: true})
	}
	if len(em.env) > 0 {
		// Secret env vars must not be in the process spec, which the
		// runtime records on disk: a script on the tmpfs exports them and
		// the shell that sources it runs the command.
		p, rm, err := bd.secrets.file(envScript(em.env), 0o444, 0, 0)
		if err != nil {
			return nil, err
		}
		em.cleanups = append(em.cleanups, rm)
		em.mounts = append(em.mounts, spec.Mount{Source: p, Destination: secretEnvPath, Type: "bind", ReadOnly: true})
		args = append([]string{"/bin/sh", "-c", `. ` + secretEnvPath + ` && exec "$@"`, "sh"}, args...)
	}
	tm.Done("mounts")
	hostname := id[:12]
	var sandboxID string
	var files spec.Files
	if network == NetworkBridge {
		// The build's sandbox holds the bridge's namespace and files.
		sb, err := bd.bridgeSandbox(ctx)
		if err != nil {
			return nil, err
		}
		sandboxID, hostname = sb.ID, sb.Config.Hostname
	} else if files, err = bd.etcFiles(hostname, network); err != nil {
		return nil, err
	}
	ns := spec.Namespaces{
		Network: spec.Namespace{Mode: spec.NamespacePrivate},
		IPC:     spec.Namespace{Mode: spec.NamespacePrivate},
		UTS:     spec.Namespace{Mode: spec.NamespacePrivate},
		PID:     spec.Namespace{Mode: spec.NamespacePrivate},
	}
	if network == NetworkHost {
		ns.Network = spec.Namespace{Mode: spec.NamespaceHost}
	}
	r := bd.opts.Resources
	res := spec.Resources{CPUShares: uint64(max(r.CPUShares, 0)), CPUQuota: r.CPUQuota, CPUPeriod: uint64(max(r.CPUPeriod, 0)),
		CpusetCpus: r.CpusetCpus, CpusetMems: r.CpusetMems, MemoryLimit: r.Memory}
	if r.MemorySwap != 0 {
		ms := r.MemorySwap
		res.MemorySwap = &ms
	}
	logPath := filepath.Join(bd.stateDir, "run-"+hostname+".log")
	sc := spec.Container{
		Args:       args,
		Env:        env,
		WorkingDir: wd,
		User:       spec.User{Spec: s.img.Config.User},
		Hostname:   hostname,
		Mounts:     em.mounts,
		Files:      files,
		Shm:        spec.Shm{Size: bd.opts.ShmSize},
		Seccomp:    spec.Seccomp{Kind: spec.SeccompRuntimeDefault},
		Namespaces: ns,
		Resources:  res,
	}
	targets := append([]string{"/proc", "/dev", "/sys", "/etc/hosts", "/etc/resolv.conf", "/etc/hostname"}, em.targets...)
	var rmounts []runtime.Mount
	for _, m := range rootfs {
		rmounts = append(rmounts, runtime.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	// Subscribed before the start so that the exit cannot be missed.
	evctx, stopEvents := context.WithCancel(ctx)
	defer stopEvents()
	events := bd.b.rt.Subscribe(evctx)
	c, err := bd.b.rt.CreateContainer(ctx, runtime.ContainerConfig{
		ID: id, SandboxID: sandboxID, Name: "build-" + id[:12], Rootfs: rmounts, Spec: sc, LogPath: logPath,
		Labels: map[string]string{"berth.build": bd.id},
	})
	if err != nil {
		return nil, fmt.Errorf("RUN: create container: %w", err)
	}
	removed := false
	remove := func() error {
		if removed {
			return nil
		}
		removed = true
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		err := bd.b.rt.RemoveContainer(rctx, c.ID)
		bd.emit(ctx, Event{Kind: EventRemoved, ID: c.ID})
		return err
	}
	defer func() {
		if err := remove(); err != nil {
			logctx.From(ctx).WarnContext(ctx, "remove build container", "id", c.ID, "error", err)
		}
	}()
	tm.Done("create")
	bd.emit(ctx, Event{Kind: EventRunning, ID: c.ID})
	if err := bd.b.rt.StartContainer(ctx, c.ID); err != nil {
		return nil, fmt.Errorf("RUN: start: %w", err)
	}
	tm.Done("start")
	followDone := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(followDone)
		bd.follow(ctx, logPath, exited)
	}()
	code, reason, err := bd.wait(ctx, c.ID, events)
	close(exited)
	<-followDone
	os.Remove(logPath)
	tm.Done("run")
	if err != nil {
		return nil, err
	}
	if code != 0 {
		msg := fmt.Sprintf("process %q did not complete successfully: exit code: %d", strings.Join(args, " "), code)
		if reason == runtime.ReasonOOMKilled {
			msg += " (killed: out of memory)"
		}
		return nil, errors.New(msg)
	}
	if err := remove(); err != nil {
		return nil, fmt.Errorf("RUN: remove container: %w", err)
	}
	tm.Done("remove")
	em.cleanup()
	cleanStubs(upper, lowers, targets)
	l, err := bd.b.images.CommitSnapshot(ctx, bd.lease, snap, topChain(s.layers))
	tm.Done("commit")
	return l, err
}

// wait returns the exit of container id, from the runtime's events (or,
// should they lag, its record). A canceled build kills the step.
func (bd *build) wait(ctx context.Context, id string, events <-chan runtime.Event) (int32, string, error) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case e, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if e.ContainerID != id || e.Type != runtime.EventStopped {
				continue
			}
		case <-tick.C:
		case <-ctx.Done():
			return 0, "", fmt.Errorf("RUN: %w", ctx.Err())
		}
		c, err := bd.b.rt.Container(id)
		if err != nil {
			return 0, "", fmt.Errorf("RUN: %w", err)
		}
		if c.State == runtime.ContainerExited {
			return c.ExitCode, c.Reason, nil
		}
	}
}

// follow streams the RUN step's output from its log (the shim writes it in
// the CRI format: "<time> <stream> <F|P> <text>") until exited is closed
// and the file is drained. Secret values are masked.
func (bd *build) follow(ctx context.Context, logPath string, exited <-chan struct{}) {
	var f *os.File
	var br *bufio.Reader
	var partial []byte
	done := false
	for {
		if f == nil {
			if ff, err := os.Open(logPath); err == nil {
				f, br = ff, bufio.NewReaderSize(ff, 64<<10)
				defer f.Close()
			}
		}
		if br != nil {
			for {
				line, err := br.ReadBytes('\n')
				if err == io.EOF {
					// An incomplete line: put it back by keeping it for
					// the next read.
					if len(line) > 0 {
						br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(line), f), 64<<10)
					}
					break
				}
				if err != nil {
					break
				}
				text, full, ok := parseCRILine(line)
				if !ok {
					continue
				}
				partial = append(partial, text...)
				if full {
					out := bd.secrets.mask(append(partial, '\n'))
					bd.emit(ctx, Event{Kind: EventOutput, Text: string(out)})
					partial = partial[:0]
				}
			}
		}
		if done {
			if len(partial) > 0 {
				bd.emit(ctx, Event{Kind: EventOutput, Text: string(bd.secrets.mask(partial)) + "\n"})
			}
			return
		}
		select {
		case <-exited:
			done = true
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// parseCRILine splits "<time> <stream> <tag> <text>\n".
func parseCRILine(line []byte) (text []byte, full, ok bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	parts := bytes.SplitN(line, []byte(" "), 4)
	if len(parts) < 3 {
		return nil, false, false
	}
	if len(parts) == 4 {
		text = parts[3]
	}
	return text, !bytes.Equal(parts[2], []byte("P")), true
}
