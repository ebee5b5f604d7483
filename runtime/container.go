package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
	"github.com/berth-dev/berth/runtime/spec"
)

// cleanupTimeout bounds rollbacks, which run on a context the caller's
// cancellation cannot abort.
const cleanupTimeout = time.Minute

// CreateContainer mounts the rootfs, writes the bundle and starts the shim
// with the container created but not started. On error everything made is
// undone.
func (m *Manager) CreateContainer(ctx context.Context, cfg ContainerConfig) (_ *Container, retErr error) {
	if cfg.ID == "" {
		cfg.ID = newID()
	} else if err := checkID(cfg.ID); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	switch {
	case len(cfg.Rootfs) == 0:
		return nil, fmt.Errorf("create container %s: no rootfs mounts: %w", cfg.Name, errdefs.ErrInvalidArgument)
	case len(cfg.Spec.Args) == 0:
		return nil, fmt.Errorf("create container %s: no command: %w", cfg.Name, errdefs.ErrInvalidArgument)
	case cfg.LogPath != "" && !filepath.IsAbs(cfg.LogPath):
		return nil, fmt.Errorf("create container %s: log path %q is not absolute: %w", cfg.Name, cfg.LogPath, errdefs.ErrInvalidArgument)
	}
	if err := cfg.Log.validate(); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.Name, err)
	}
	res, err := m.fitResources(ctx, cfg.ID, cfg.Spec.Resources)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	// Recorded as applied: the status reports what the container has.
	cfg.Spec.Resources = res
	st := steps.Start(ctx, "create container")
	// The shim's runc moves the container's init into its cgroup in a few
	// ms.
	m.warmer.warm()
	var sb *sandbox
	if cfg.SandboxID != "" {
		var err error
		if sb, err = m.getSandbox(cfg.SandboxID); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.Name, err)
		}
		m.mu.Lock()
		pending := sb.rec.Pending
		m.mu.Unlock()
		if pending {
			// Its creation is under way (its Admit hook may wait on a
			// plugin): fail now rather than wait for the pod's lock.
			return nil, fmt.Errorf("create container %s: sandbox %s is still being created: %w", cfg.Name, sb.rec.ID, errdefs.ErrFailedPrecondition)
		}
		// Held until the container exists: a pod being stopped or removed
		// gets no new container half-way.
		sb.op.Lock()
		defer sb.op.Unlock()
		cfg.SandboxID = sb.rec.ID
		if cfg.Owner != "" && cfg.Owner != sb.rec.Config.Owner {
			return nil, fmt.Errorf("create container %s: owner %q differs from sandbox %s's %q: %w", cfg.Name, cfg.Owner, sb.rec.ID, sb.rec.Config.Owner, errdefs.ErrInvalidArgument)
		}
		cfg.Owner = sb.rec.Config.Owner
	} else {
		owner, err := m.stamp(cfg.Owner)
		if err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.Name, err)
		}
		cfg.Owner = owner
	}

	dir := m.containerDir(cfg.ID)
	c := &container{exited: make(chan struct{})}
	m.mu.Lock()
	if sb != nil && (sb.rec.State != SandboxReady || sb.rec.Pending) {
		m.mu.Unlock()
		return nil, fmt.Errorf("create container %s: sandbox %s is not ready: %w", cfg.Name, cfg.SandboxID, errdefs.ErrFailedPrecondition)
	}
	if _, ok := m.containers[cfg.ID]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("create container %s: id %s: %w", cfg.Name, cfg.ID, errdefs.ErrAlreadyExists)
	}
	for _, o := range m.containers {
		if cfg.SandboxID != "" && cfg.Name != "" && o.rec.SandboxID == cfg.SandboxID && o.rec.Config.Name == cfg.Name && o.rec.Config.Attempt == cfg.Attempt {
			m.mu.Unlock()
			return nil, fmt.Errorf("create container %s (attempt %d) in sandbox %s: name taken by %s: %w", cfg.Name, cfg.Attempt, cfg.SandboxID, o.rec.ID, errdefs.ErrAlreadyExists)
		}
	}
	c.rec = containerRecord{
		Container: Container{
			ID: cfg.ID, SandboxID: cfg.SandboxID, Config: cfg, State: ContainerCreated,
			CreatedAt: time.Now(), Bundle: dir, UpperDir: upperDir(cfg.Rootfs),
		},
		Pending: true,
		ShimDir: m.pickShimDir(cfg.ID),
	}
	// The caller's hook serves this call only.
	c.rec.Config.Adjust = nil
	m.containers[cfg.ID] = c
	m.mu.Unlock()

	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.releaseContainer(cctx, c); err != nil {
			logctx.From(ctx).WarnContext(ctx, "undo container creation", "id", cfg.ID, "error", err)
		}
		m.mu.Lock()
		delete(m.containers, cfg.ID)
		m.mu.Unlock()
	}()

	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o711); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	st.Done("mkdir")
	if err := m.noteContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	st.Done("save-pending")
	var im *idmap
	if sb != nil {
		m.mu.Lock()
		if p := sb.rec.UserNSPath; p != "" {
			u := sb.rec.Config.UserNS
			im = &idmap{userNS: p, uids: u.UIDMappings, gids: u.GIDMappings}
		}
		m.mu.Unlock()
	}
	if im != nil {
		// Image files keep their owners inside the pod's user namespace.
		err = mountIDMapped(cfg.Rootfs, rootfs, *im)
	} else {
		err = mountAll(cfg.Rootfs, rootfs)
	}
	if err != nil {
		return nil, fmt.Errorf("create container %s: mount rootfs: %w", cfg.ID, err)
	}
	st.Done("mount")
	sc, err := m.containerSpec(cfg, sb, rootfs)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	m.mu.Lock()
	c.rec.CgroupsPath = sc.CgroupsPath
	m.mu.Unlock()
	oci, err := spec.Generate(sc)
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	if cfg.Adjust != nil {
		if err := m.adjust(ctx, c, cfg.Adjust, oci); err != nil {
			return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
		}
		st.Done("adjust")
	}
	m.mu.Lock()
	c.rec.User = processUser(oci)
	m.mu.Unlock()
	st.Done("spec")
	// Read by the shim at once and by Exec later, never after a reboot:
	// not synced, and compact.
	b, err := json.Marshal(oci)
	if err != nil {
		return nil, fmt.Errorf("create container %s: encode bundle: %w", cfg.ID, err)
	}
	if err := atomicfile.Replace(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	if cfg.LogPath != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.LogPath), 0o755); err != nil {
			return nil, fmt.Errorf("create container %s: log directory: %w", cfg.ID, err)
		}
	}
	// The cgroup (final once the hook ran) is on record before a shim
	// exists: an Open after a crash during the shim's creation kills
	// what the shim started in it.
	if err := m.noteContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	st.Done("bundle")
	cl, err := m.launcher.Start(ctx, shim.StartOptions{
		ID: cfg.ID, Bundle: dir, StateDir: c.rec.ShimDir,
		LogPath: cfg.LogPath, Log: cfg.Log.wire(), Stdin: cfg.Stdin, StdinOnce: cfg.Stdin && cfg.StdinOnce, CreateOnly: true,
		SeccompCache: m.seccompCacheDir(),
	})
	if err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	st.Done("shim-create")
	m.mu.Lock()
	c.client = cl
	c.rec.Pid = cl.Pid()
	c.rec.Pending = false
	out := c.rec.Container
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return nil, fmt.Errorf("create container %s: %w", cfg.ID, err)
	}
	st.Done("save")
	st.Log("id", cfg.ID)
	m.watch(ctx, c)
	m.emit(c, EventCreated)
	return &out, nil
}

func (l LogConfig) wire() wire.Log {
	return wire.Log{Format: l.Format, MaxSize: l.MaxSize, MaxFiles: l.MaxFiles, Compress: l.Compress, Attrs: l.Attrs, NonBlocking: l.NonBlocking, MaxBuffer: l.MaxBuffer}
}

// pickShimDir returns the shortest free <StateDir>/c/<id prefix>. Called
// with m.mu held.
func (m *Manager) pickShimDir(id string) string {
	for n := 12; ; n += 4 {
		if n >= len(id) {
			return filepath.Join(m.cfg.StateDir, "c", id)
		}
		d := filepath.Join(m.cfg.StateDir, "c", id[:n])
		taken := false
		for _, o := range m.containers {
			if o.rec.ShimDir == d {
				taken = true
				break
			}
		}
		if _, err := os.Lstat(d); !taken && errors.Is(err, os.ErrNotExist) {
			return d
		}
	}
}

// containerSpec completes the caller's spec with what the Manager owns:
// the rootfs, the pod's namespaces, files and /dev/shm, the cgroup path
// and the OOM score floor.
func (m *Manager) containerSpec(cfg ContainerConfig, sb *sandbox, rootfs string) (spec.Container, error) {
	sc := cfg.Spec
	sc.ID = cfg.ID
	sc.Rootfs = rootfs
	sc.Terminal = cfg.TTY
	sc.MinOOMScoreAdj = m.oomFloor
	if sc.Annotations == nil && len(cfg.Annotations) > 0 {
		sc.Annotations = cfg.Annotations
	}
	if !m.cgroupV2 && sc.Namespaces.Cgroup.Mode != spec.NamespaceJoin {
		// containerd gives private cgroup namespaces only on v2.
		sc.Namespaces.Cgroup = spec.Namespace{Mode: spec.NamespaceHost}
	}
	parent := ""
	if sb != nil {
		m.mu.Lock()
		rec := sb.rec
		m.mu.Unlock()
		ns := &sc.Namespaces
		ns.Network = pinned(rec.NetNSPath)
		ns.IPC = pinned(rec.IPCNSPath)
		ns.UTS = pinned(rec.UTSNSPath)
		switch cfg.PID {
		case NamespacePod:
			switch {
			case rec.PausePid != 0 && rec.Config.Namespaces.PID == NamespacePod:
				ns.PID = spec.Namespace{Mode: spec.NamespaceJoin, Path: fmt.Sprintf("/proc/%d/ns/pid", rec.PausePid)}
			case rec.Config.Namespaces.PID == NamespaceNode:
				ns.PID = spec.Namespace{Mode: spec.NamespaceHost}
			default:
				ns.PID = spec.Namespace{Mode: spec.NamespacePrivate}
			}
		case NamespaceContainer:
			ns.PID = spec.Namespace{Mode: spec.NamespacePrivate}
		case NamespaceNode:
			ns.PID = spec.Namespace{Mode: spec.NamespaceHost}
		case NamespaceTarget:
			t, err := m.getContainer(cfg.PIDTarget)
			if err != nil {
				return sc, fmt.Errorf("pid namespace target: %w", err)
			}
			m.mu.Lock()
			pid, state := t.rec.Pid, t.rec.State
			m.mu.Unlock()
			if state != ContainerRunning || pid == 0 {
				return sc, fmt.Errorf("pid namespace target %s is not running: %w", cfg.PIDTarget, errdefs.ErrFailedPrecondition)
			}
			ns.PID = spec.Namespace{Mode: spec.NamespaceJoin, Path: fmt.Sprintf("/proc/%d/ns/pid", pid)}
		default:
			return sc, fmt.Errorf("pid namespace mode %d: %w", cfg.PID, errdefs.ErrInvalidArgument)
		}
		if rec.UserNSPath != "" && sc.Namespaces.User == nil {
			u := rec.Config.UserNS
			path := rec.UserNSPath
			if rec.PausePid != 0 {
				// runc reads the mappings of /proc/<pid>/ns/user directly.
				path = fmt.Sprintf("/proc/%d/ns/user", rec.PausePid)
			}
			sc.Namespaces.User = &spec.UserNamespace{Path: path, UIDMappings: u.UIDMappings, GIDMappings: u.GIDMappings}
		}
		if sc.Hostname == "" {
			sc.Hostname = rec.hostname()
		}
		if sc.Files == (spec.Files{}) {
			sc.Files = spec.Files{HostsPath: rec.HostsPath, ResolvConfPath: rec.ResolvConfPath, HostnamePath: rec.HostnamePath}
		}
		if sc.Shm.Source == "" && sc.Shm.Size == 0 {
			sc.Shm.Source = rec.ShmPath
			if rec.ShmPath == "" {
				sc.Shm.Source = "/dev/shm"
			}
		}
		parent = rec.CgroupParent
	}
	if sc.CgroupsPath == "" {
		sc.CgroupsPath = m.cgroupsPath(parent, cfg.ID)
	}
	return sc, nil
}

func pinned(path string) spec.Namespace {
	if path == "" {
		return spec.Namespace{Mode: spec.NamespaceHost}
	}
	return spec.Namespace{Mode: spec.NamespaceJoin, Path: path}
}

// cgroupsPath is a container's cgroup below parent; a container without a
// pod gets a top-level cgroup of its own, so no shared parent is left
// behind when the last one goes.
func (m *Manager) cgroupsPath(parent, id string) string {
	if m.cfg.CgroupDriver == CgroupDriverSystemd {
		if parent == "" {
			parent = "system.slice"
		}
		return parent + ":berth:" + id
	}
	if parent == "" {
		return "/berth-" + id
	}
	return filepath.Join(parent, "berth-"+id)
}

// watch learns the container's exit from its shim and records it. The
// watcher outlives ctx; it keeps only its values (the logger).
func (m *Manager) watch(ctx context.Context, c *container) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.mu.Lock()
	c.unwatch = cancel
	cl := c.client
	m.mu.Unlock()
	m.watchers.Add(1)
	go func() {
		defer m.watchers.Done()
		defer cancel()
		go func() {
			select {
			case <-m.closed:
				cancel()
			case <-ctx.Done():
			}
		}()
		for {
			e, err := cl.Wait(ctx)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				m.recordExit(ctx, c, e)
				return
			}
			if e, err := shim.ReadExit(c.rec.ShimDir); err == nil {
				m.recordExit(ctx, c, e)
				return
			}
			if _, err := shim.Connect(ctx, c.rec.ShimDir); err != nil {
				m.recordExit(ctx, c, m.exitAfterLoss(c))
				return
			}
			// The shim lives: a broken connection, not an exit.
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return
			}
		}
	}()
}

// exitAfterLoss is the exit of a container whose shim is gone: the one it
// recorded, or code 255 with reason Unknown.
func (m *Manager) exitAfterLoss(c *container) wire.Exit {
	if e, err := shim.ReadExit(c.rec.ShimDir); err == nil {
		return e
	}
	return wire.Exit{Code: -1, FinishedAt: time.Now()}
}

// applyExit records e in c's record; called with m.mu held (or before the
// Manager is shared).
func (m *Manager) applyExit(c *container, e wire.Exit) {
	r := &c.rec
	r.State = ContainerExited
	r.Pid = 0
	r.Paused = false
	r.FinishedAt = e.FinishedAt
	if r.StartedAt.IsZero() {
		r.StartedAt = e.StartedAt
	}
	switch {
	case e.Code == -1:
		r.ExitCode = 255
		r.Reason = ReasonUnknown
		r.Message = "the container's monitor disappeared without recording an exit status"
	case e.OOMKilled:
		r.ExitCode = int32(e.Code)
		r.Reason = ReasonOOMKilled
	case e.Code == 0:
		r.ExitCode = 0
		r.Reason = ReasonCompleted
	default:
		r.ExitCode = int32(e.Code)
		r.Reason = ReasonError
	}
}

// recordExit stores the exit durably, then wakes StopContainer and emits
// Stopped. Only the first exit counts.
func (m *Manager) recordExit(ctx context.Context, c *container, e wire.Exit) {
	m.mu.Lock()
	if c.rec.State == ContainerExited {
		m.mu.Unlock()
		return
	}
	m.applyExit(c, e)
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		logctx.From(ctx).ErrorContext(ctx, "record container exit", "id", c.rec.ID, "error", err)
	}
	close(c.exited)
	m.emit(c, EventStopped)
}

// StartContainer runs a created container's process.
func (m *Manager) StartContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("start container: %w", err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if state != ContainerCreated || cl == nil {
		return fmt.Errorf("start container %s: it is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	st, err := cl.Start(ctx)
	if err != nil {
		return fmt.Errorf("start container %s: %w", c.rec.ID, err)
	}
	m.mu.Lock()
	if c.rec.State == ContainerCreated {
		c.rec.State = ContainerRunning
		c.rec.StartedAt = st.StartedAt
		if st.Pid != 0 {
			c.rec.Pid = st.Pid
		}
		if c.rec.StartedAt.IsZero() {
			c.rec.StartedAt = time.Now()
		}
	}
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("start container %s: %w", c.rec.ID, err)
	}
	m.emit(c, EventStarted)
	return nil
}

// StopContainer sends the stop signal, waits up to timeout, then SIGKILLs;
// it returns once the exit is recorded. Stopping an exited container
// succeeds, and so does stopping a created one (it is killed before it
// ran). An unknown container is ErrNotFound.
func (m *Manager) StopContainer(ctx context.Context, id string, timeout time.Duration) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("stop container: %w", err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	return m.stop(ctx, c, timeout)
}

// stop is StopContainer with c.op held.
func (m *Manager) stop(ctx context.Context, c *container, timeout time.Duration) error {
	m.mu.Lock()
	state, cl, sig := c.rec.State, c.client, c.rec.Config.StopSignal
	m.mu.Unlock()
	if state == ContainerExited {
		return nil
	}
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if state == ContainerRunning && timeout > 0 && sig != syscall.SIGKILL {
		// NotFound: exiting already; Unavailable: the shim is gone, and
		// the watcher records the exit. Either way the exit is awaited.
		if err := cl.Signal(ctx, sig); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
			return fmt.Errorf("stop container %s: %w", c.rec.ID, err)
		}
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-c.exited:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("stop container %s: %w", c.rec.ID, ctx.Err())
		}
	}
	if err := cl.Signal(ctx, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
		return fmt.Errorf("stop container %s: %w", c.rec.ID, err)
	}
	select {
	case <-c.exited:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop container %s: waiting for its exit: %w", c.rec.ID, ctx.Err())
	case <-m.closed:
		return fmt.Errorf("stop container %s: runtime closed: %w", c.rec.ID, errdefs.ErrUnavailable)
	}
}

// RemoveContainer kills the container if it runs, deletes it and its shim,
// unmounts the rootfs and removes the bundle and state. Removing an unknown
// container succeeds.
func (m *Manager) RemoveContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove container: %w", err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	return m.remove(ctx, c)
}

// remove is RemoveContainer with c.op held.
func (m *Manager) remove(ctx context.Context, c *container) error {
	m.mu.Lock()
	_, present := m.containers[c.rec.ID]
	m.mu.Unlock()
	if !present {
		return nil
	}
	if err := m.stop(ctx, c, 0); err != nil {
		return fmt.Errorf("remove container %s: %w", c.rec.ID, err)
	}
	if err := m.releaseContainer(ctx, c); err != nil {
		return fmt.Errorf("remove container %s: %w", c.rec.ID, err)
	}
	m.mu.Lock()
	delete(m.containers, c.rec.ID)
	m.mu.Unlock()
	m.emit(c, EventDeleted)
	return nil
}

// releaseContainer undoes everything a container holds: its shim (delete
// and shut down), rootfs mounts, state and bundle; the record goes last so
// that a crash half-way leaves something for Remove to finish. Each step
// tolerates what is already gone.
func (m *Manager) releaseContainer(ctx context.Context, c *container) error {
	m.mu.Lock()
	cl, unwatch, id, shimDir, cgPath := c.client, c.unwatch, c.rec.ID, c.rec.ShimDir, c.rec.CgroupsPath
	m.mu.Unlock()
	st := steps.Start(ctx, "release container")
	defer st.Log("id", id)
	if cl == nil && shimDir != "" {
		cl, _ = shim.Connect(ctx, shimDir)
	}
	shimGone := cl == nil
	if shimGone && shimDir != "" {
		// A shim that cannot be reached may still be creating the
		// container (berthd died meanwhile): it goes before the cgroup.
		if err := shim.KillStray(ctx, shimDir); err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	if cl != nil {
		err := cl.Delete(ctx, shim.DeleteOptions{Force: true})
		st.Done("shim-delete")
		if err != nil && !errdefs.IsUnavailable(err) {
			return fmt.Errorf("delete container %s: %w", id, err)
		}
		shimGone = err != nil
		if err == nil {
			if err := cl.Shutdown(ctx); err != nil && !errdefs.IsUnavailable(err) {
				return fmt.Errorf("shut down shim of %s: %w", id, err)
			}
			st.Done("shim-shutdown")
		}
	}
	if shimGone && cgPath != "" && m.cfg.CgroupDriver == CgroupDriverCgroupfs {
		// Without its shim nobody else kills what the container left
		// running or removes its cgroup.
		if err := killCgroup(ctx, cgPath); err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	if unwatch != nil {
		unwatch()
	}
	dir := m.containerDir(id)
	if err := unmountAll(filepath.Join(dir, "rootfs")); err != nil {
		return err
	}
	st.Done("unmount")
	if shimDir != "" {
		if err := os.RemoveAll(shimDir); err != nil {
			return fmt.Errorf("remove shim state of %s: %w", id, err)
		}
	}
	if err := os.Remove(filepath.Join(dir, "config.json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	if err := os.Remove(filepath.Join(dir, "rootfs")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove bundle of %s: %w", id, err)
	}
	st.Done("files")
	return nil
}

// processUser is the user the spec's process runs as.
func processUser(sp *specs.Spec) *User {
	if sp == nil || sp.Process == nil {
		return nil
	}
	u := sp.Process.User
	return &User{UID: u.UID, GID: u.GID, AdditionalGIDs: slices.Clone(u.AdditionalGids)}
}

// ContainerSpec returns the OCI spec the container was created with (its
// bundle's config.json), for what only the spec says: a verbose status,
// NRI plugins.
func (m *Manager) ContainerSpec(id string) (*specs.Spec, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	bundle, pending := c.rec.Bundle, c.rec.Pending
	m.mu.Unlock()
	if pending {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	return readBundleSpec(bundle)
}

// readBundleSpec reads a bundle's config.json.
func readBundleSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("spec of bundle %s: %w: %w", bundle, errdefs.ErrNotFound, err)
		}
		return nil, fmt.Errorf("spec of bundle %s: %w", bundle, err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("spec of bundle %s: %w: %w", bundle, errdefs.ErrDataLoss, err)
	}
	return &sp, nil
}
