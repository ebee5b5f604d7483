package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime/namespace"
)

// shmSize is the pod's /dev/shm, as in containerd and Docker.
const shmSize = 64 << 20

// pauseCgroup is the pause holder's cgroup below the pod's: on cgroup v2 a
// cgroup with processes cannot delegate controllers to its children.
const pauseCgroup = "berth-pause"

func (r *sandboxRecord) hostname() string {
	if r.Config.Hostname != "" {
		return r.Config.Hostname
	}
	// The node's, as containerd does; a pod name can exceed the 64 bytes
	// of a hostname.
	h, _ := os.Hostname()
	return h
}

// ipcSysctl says whether a sysctl belongs to the IPC namespace.
func ipcSysctl(k string) bool {
	k = strings.ReplaceAll(k, "/", ".")
	switch {
	case k == "kernel.sem", strings.HasPrefix(k, "kernel.shm"), strings.HasPrefix(k, "kernel.msg"), strings.HasPrefix(k, "fs.mqueue."):
		return true
	}
	return false
}

func validateSandbox(c *SandboxConfig) error {
	switch {
	case c.Name == "":
		return fmt.Errorf("sandbox name is required: %w", errdefs.ErrInvalidArgument)
	case len(c.Hostname) > 64:
		return fmt.Errorf("sandbox %s: hostname %q is longer than 64 bytes: %w", c.Name, c.Hostname, errdefs.ErrInvalidArgument)
	case c.RuntimeHandler != "":
		return fmt.Errorf("sandbox %s: runtime handler %q: %w", c.Name, c.RuntimeHandler, errdefs.ErrNotFound)
	case c.Namespaces.Network == NamespaceTarget && (c.NetworkTarget == "" || c.UserNS != nil):
		return fmt.Errorf("sandbox %s: joining another sandbox's network needs its ID, and no user namespace: %w", c.Name, errdefs.ErrInvalidArgument)
	case c.Namespaces.Network != NamespacePod && c.Namespaces.Network != NamespaceNode && c.Namespaces.Network != NamespaceTarget:
		return fmt.Errorf("sandbox %s: network namespace mode %d: %w", c.Name, c.Namespaces.Network, errdefs.ErrInvalidArgument)
	case c.Namespaces.IPC == NamespaceTarget && (c.IPCTarget == "" || c.UserNS != nil):
		return fmt.Errorf("sandbox %s: joining another sandbox's IPC needs its ID, and no user namespace: %w", c.Name, errdefs.ErrInvalidArgument)
	case c.Namespaces.IPC != NamespacePod && c.Namespaces.IPC != NamespaceNode && c.Namespaces.IPC != NamespaceTarget:
		return fmt.Errorf("sandbox %s: ipc namespace mode %d: %w", c.Name, c.Namespaces.IPC, errdefs.ErrInvalidArgument)
	case c.Namespaces.UTS != NamespacePod && c.Namespaces.UTS != NamespaceNode:
		return fmt.Errorf("sandbox %s: uts namespace mode %d: %w", c.Name, c.Namespaces.UTS, errdefs.ErrInvalidArgument)
	case c.Namespaces.PID == NamespaceTarget || c.Namespaces.PID < 0 || c.Namespaces.PID > NamespaceTarget:
		return fmt.Errorf("sandbox %s: pid namespace mode %d: %w", c.Name, c.Namespaces.PID, errdefs.ErrInvalidArgument)
	}
	if u := c.UserNS; u != nil {
		for _, ms := range [][]specs.LinuxIDMapping{u.UIDMappings, u.GIDMappings} {
			if len(ms) != 1 || ms[0].ContainerID != 0 || ms[0].Size == 0 {
				return fmt.Errorf("sandbox %s: user namespace needs exactly one mapping, of container ID 0 and non-empty, got %+v: %w", c.Name, ms, errdefs.ErrInvalidArgument)
			}
		}
	}
	for k := range c.Sysctls {
		switch {
		case strings.HasPrefix(strings.ReplaceAll(k, "/", "."), "net."):
			if c.Namespaces.Network != NamespacePod {
				return fmt.Errorf("sandbox %s: sysctl %s needs the pod's own network namespace: %w", c.Name, k, errdefs.ErrInvalidArgument)
			}
		case ipcSysctl(k):
			if c.Namespaces.IPC != NamespacePod {
				return fmt.Errorf("sandbox %s: sysctl %s needs the pod's own ipc namespace: %w", c.Name, k, errdefs.ErrInvalidArgument)
			}
		default:
			return fmt.Errorf("sandbox %s: sysctl %s is not namespaced: %w", c.Name, k, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// CreateSandbox creates a pod sandbox and returns it Ready: its namespaces
// pinned, hostname and sysctls set, /etc files written, /dev/shm mounted
// and, for a pod-shared PID namespace, the pause holder running (born in
// the pod's network, IPC and UTS namespaces, placed in the pod's cgroup).
// On error everything made is undone. It pulls nothing.
func (m *Manager) CreateSandbox(ctx context.Context, cfg SandboxConfig) (_ *Sandbox, retErr error) {
	if cfg.ID == "" {
		cfg.ID = newID()
	} else if err := checkID(cfg.ID); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
	}
	if err := validateSandbox(&cfg); err != nil {
		return nil, fmt.Errorf("create sandbox: %w", err)
	}
	owner, err := m.stamp(cfg.Owner)
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
	}
	cfg.Owner = owner
	id := cfg.ID
	st := steps.Start(ctx, "create sandbox")
	s := &sandbox{dir: m.sandboxDir(id)}
	s.op.Lock()
	defer s.op.Unlock()
	m.mu.Lock()
	if _, ok := m.sandboxes[id]; ok {
		m.mu.Unlock()
		return nil, fmt.Errorf("create sandbox %s: id %s: %w", cfg.Name, id, errdefs.ErrAlreadyExists)
	}
	for _, o := range m.sandboxes {
		oc := o.rec.Config
		if oc.Owner == cfg.Owner && oc.Name == cfg.Name && oc.Namespace == cfg.Namespace && oc.UID == cfg.UID && oc.Attempt == cfg.Attempt {
			m.mu.Unlock()
			return nil, fmt.Errorf("create sandbox %s/%s (attempt %d): taken by %s: %w", cfg.Namespace, cfg.Name, cfg.Attempt, o.rec.ID, errdefs.ErrAlreadyExists)
		}
	}
	s.rec = sandboxRecord{
		Sandbox: Sandbox{
			ID: id, Config: cfg, State: SandboxReady, CreatedAt: time.Now(),
			HostsPath:      filepath.Join(s.dir, "hosts"),
			ResolvConfPath: filepath.Join(s.dir, "resolv.conf"),
			HostnamePath:   filepath.Join(s.dir, "hostname"),
		},
		Pending:      true,
		CgroupParent: cfg.CgroupParent,
	}
	// The caller's hooks serve this call only.
	s.rec.Config.Network = nil
	s.rec.Config.Admit = nil
	switch cfg.Namespaces.Network {
	case NamespacePod:
		s.rec.NetNSPath = m.nsPath("net", id)
		s.rec.UTSNSPath = m.nsPath("uts", id)
	case NamespaceTarget:
		t, ok := m.sandboxes[cfg.NetworkTarget]
		if !ok || !m.seesSandbox(t) || t.rec.Pending || t.rec.State != SandboxReady {
			m.mu.Unlock()
			return nil, fmt.Errorf("create sandbox %s: network of sandbox %s: %w", cfg.Name, cfg.NetworkTarget, errdefs.ErrNotFound)
		}
		// Joined, never pinned or unpinned here: the target owns it.
		// A target on the host's network gives the host's.
		s.rec.NetNSPath = t.rec.NetNSPath
		if s.rec.NetNSPath != "" {
			s.rec.UTSNSPath = m.nsPath("uts", id)
		}
	}
	if cfg.Namespaces.UTS == NamespaceNode {
		s.rec.UTSNSPath = ""
	}
	switch cfg.Namespaces.IPC {
	case NamespacePod:
		s.rec.IPCNSPath = m.nsPath("ipc", id)
		s.rec.ShmPath = filepath.Join(s.dir, "shm")
	case NamespaceTarget:
		t, ok := m.sandboxes[cfg.IPCTarget]
		if !ok || !m.seesSandbox(t) || t.rec.Pending || t.rec.State != SandboxReady {
			m.mu.Unlock()
			return nil, fmt.Errorf("create sandbox %s: IPC of sandbox %s: %w", cfg.Name, cfg.IPCTarget, errdefs.ErrNotFound)
		}
		// Joined, never pinned, mounted or released here: the target
		// owns them.
		s.rec.IPCNSPath, s.rec.ShmPath = t.rec.IPCNSPath, t.rec.ShmPath
	}
	if cfg.UserNS != nil {
		s.rec.UserNSPath = m.nsPath("user", id)
	}
	m.sandboxes[id] = s
	m.mu.Unlock()

	defer func() {
		if retErr == nil {
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := m.releaseSandbox(cctx, s); err != nil {
			logctx.From(ctx).WarnContext(ctx, "undo sandbox creation", "id", id, "error", err)
		}
		m.mu.Lock()
		delete(m.sandboxes, id)
		m.mu.Unlock()
	}()

	var att *podAttach
	if cfg.Network != nil && s.rec.NetNSPath != "" && cfg.Namespaces.Network == NamespacePod {
		att = &podAttach{net: cfg.Network, netns: s.rec.NetNSPath, done: make(chan struct{})}
	}
	defer func() {
		// Before the release above: detach, then unpin.
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			att.undo(cctx)
		}
	}()

	if err := os.MkdirAll(s.dir, 0o711); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	st.Done("mkdir")
	withPause := cfg.Namespaces.PID == NamespacePod
	var cg cgroups.Manager
	if m.cfg.CgroupDriver == CgroupDriverCgroupfs {
		if s.rec.CgroupParent == "" {
			s.rec.CgroupParent = "/berth-pod-" + id[:16]
		}
		path := s.rec.CgroupParent
		if withPause {
			path = filepath.Join(path, pauseCgroup)
		}
		var err error
		cg, err = manager.New(&cgroups.Cgroup{Path: path, Resources: &cgroups.Resources{}})
		if err != nil {
			return nil, fmt.Errorf("create sandbox %s: pod cgroup: %w", id, err)
		}
		// Recorded before they exist, so that a crash in between still
		// finds them to remove.
		s.rec.CgroupDirs = missingCgroupDirs(cg.GetPaths())
	}
	st.Done("cgroup-manager")
	if err := m.noteSandbox(s); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	st.Done("save-pending")
	// The namespaces first: the CNI ADD starts as soon as they are pinned,
	// and what follows runs while it does.
	pin := namespace.PinOptions{Paths: map[namespace.Kind]string{}, Sysctls: cfg.Sysctls}
	if s.rec.NetNSPath != "" {
		if cfg.Namespaces.Network != NamespaceTarget {
			pin.Paths[namespace.Net] = s.rec.NetNSPath
		}
		if s.rec.UTSNSPath != "" {
			pin.Paths[namespace.UTS] = s.rec.UTSNSPath
			pin.Hostname = s.rec.hostname()
		}
	}
	if s.rec.IPCNSPath != "" && cfg.Namespaces.IPC != NamespaceTarget {
		pin.Paths[namespace.IPC] = s.rec.IPCNSPath
	}
	var pause *exec.Cmd
	startPause := func(attr *syscall.SysProcAttr) (int, error) {
		h, err := startPauseHolder(m.cfg.ShimBinary, attr)
		if err != nil {
			return 0, err
		}
		pause = h.cmd
		// Reaped here while berthd lives; after a restart the holder is
		// re-parented.
		go func() { _ = pause.Wait() }()
		pid := pause.Process.Pid
		m.mu.Lock()
		s.rec.PausePid = pid
		s.rec.PauseStart, _ = procStart(pid)
		m.mu.Unlock()
		// On record before the holder may hold: a crash from here on
		// finds it to kill, and one before leaves it no go-ahead.
		if err := m.noteSandbox(s); err != nil {
			h.abandon()
			return pid, err
		}
		return pid, h.goAhead()
	}
	if cfg.UserNS != nil {
		if err := m.userNamespaces(s, pin, withPause, startPause); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", id, err)
		}
		att.start(ctx)
	} else {
		pin.Then = func() error {
			// The network namespace is pinned and its loopback up: CNI
			// can attach it while the rest is made.
			st.Done("netns")
			att.start(ctx)
			if !withPause {
				return nil
			}
			// Started from the thread that is inside the pod's
			// namespaces, so the holder is born in them, with a PID
			// namespace of its own.
			_, err := startPause(&syscall.SysProcAttr{Setsid: true, Cloneflags: syscall.CLONE_NEWPID})
			if err != nil {
				// Pin unpins the namespaces when this fails: detach first.
				cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
				defer cancel()
				att.undo(cctx)
			}
			return err
		}
		if err := namespace.Pin(pin); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", id, err)
		}
	}
	st.Done("pin+pause")
	if err := m.writePodFiles(&s.rec); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	st.Done("pod-files")
	if s.rec.ShmPath != "" && cfg.Namespaces.IPC != NamespaceTarget {
		if err := os.MkdirAll(s.rec.ShmPath, 0o755); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", id, err)
		}
		size := cfg.ShmSize
		if size <= 0 {
			size = shmSize
		}
		if err := unix.Mount("shm", s.rec.ShmPath, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size="+strconv.FormatInt(size, 10)); err != nil {
			return nil, fmt.Errorf("create sandbox %s: mount /dev/shm: %w", id, err)
		}
	}
	st.Done("shm")
	if cg != nil {
		// Creates the pod cgroup and, with a pause holder, moves it in.
		pid := -1
		if pause != nil && s.rec.PausePid != 0 {
			pid = pause.Process.Pid
		}
		if err := cg.Apply(pid); err != nil {
			return nil, fmt.Errorf("create sandbox %s: create pod cgroup: %w", id, err)
		}
	}
	st.Done("cgroup")
	ips, err := att.wait()
	if err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	st.Done("network-wait")
	m.mu.Lock()
	if att != nil {
		s.rec.IPs = ips
	}
	view := copySandbox(s.rec)
	m.mu.Unlock()
	if cfg.Admit != nil {
		if err := cfg.Admit(ctx, view); err != nil {
			return nil, fmt.Errorf("create sandbox %s: %w", id, err)
		}
		st.Done("admit")
	}
	m.mu.Lock()
	s.rec.Pending = false
	out := copySandbox(s.rec)
	m.mu.Unlock()
	if err := m.saveSandbox(s); err != nil {
		return nil, fmt.Errorf("create sandbox %s: %w", id, err)
	}
	st.Done("save")
	st.Log("id", id)
	return out, nil
}

// userNamespaces creates the pod's user namespace together with the
// namespaces it owns by starting a process in all of them (a user namespace
// cannot be unshared by a multi-threaded process), pins them, and applies
// the hostname and sysctls from outside. The process stays: it holds the
// pod's PID namespace when the pod shares one, and in any case lets runc
// read the user namespace's mappings through /proc/<pid>/ns/user (its slow
// path for a pinned file spawns and waits for a child, which races with the
// shim's reaper).
func (m *Manager) userNamespaces(s *sandbox, pin namespace.PinOptions, withPause bool, startPause func(*syscall.SysProcAttr) (int, error)) error {
	u := s.rec.Config.UserNS
	flags := uintptr(syscall.CLONE_NEWUSER)
	if _, ok := pin.Paths[namespace.Net]; ok {
		flags |= syscall.CLONE_NEWNET | syscall.CLONE_NEWUTS
	}
	if _, ok := pin.Paths[namespace.IPC]; ok {
		flags |= syscall.CLONE_NEWIPC
	}
	if withPause {
		flags |= syscall.CLONE_NEWPID
	}
	idmap := func(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
		var out []syscall.SysProcIDMap
		for _, m := range ms {
			out = append(out, syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)})
		}
		return out
	}
	pid, err := startPause(&syscall.SysProcAttr{
		Setsid: true, Cloneflags: flags,
		UidMappings: idmap(u.UIDMappings), GidMappings: idmap(u.GIDMappings),
		GidMappingsEnableSetgroups: true,
	})
	if err != nil {
		return err
	}
	paths := map[namespace.Kind]string{namespace.User: s.rec.UserNSPath}
	for k, p := range pin.Paths {
		paths[k] = p
	}
	if err := namespace.PinProcess(pid, paths); err != nil {
		return err
	}
	delete(paths, namespace.User)
	return namespace.Configure(paths, pin.Hostname, pin.Sysctls)
}

// pauseHolder is a started pause holder (berth-shim pause, see
// monitor.Pause) waiting for its go-ahead.
type pauseHolder struct {
	cmd *exec.Cmd
	// gate is the write end of the pipe the holder reads its go-ahead
	// from (its fd 3). Only berthd has it (close-on-exec): berthd's death
	// closes it.
	gate *os.File
}

// startPauseHolder starts a pause holder with attr. Until goAhead, the
// holder exits as soon as gate closes, so a berthd killed between the
// holder's start and the record of its PID leaves no holder that the next
// Open cannot find.
func startPauseHolder(binary string, attr *syscall.SysProcAttr) (*pauseHolder, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("start pause holder: %w", err)
	}
	cmd := exec.Command(binary, "pause")
	cmd.Dir = "/"
	cmd.SysProcAttr = attr
	cmd.ExtraFiles = []*os.File{r}
	err = cmd.Start()
	r.Close()
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("start pause holder: %w", err)
	}
	return &pauseHolder{cmd: cmd, gate: w}, nil
}

// goAhead lets the holder hold for good: call it once its PID is on
// record.
func (h *pauseHolder) goAhead() error {
	_, err := h.gate.Write([]byte{1})
	if cerr := h.gate.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		// EPIPE: the holder is gone already.
		return fmt.Errorf("pause holder %d: go-ahead: %w", h.cmd.Process.Pid, err)
	}
	return nil
}

// abandon closes the gate without the go-ahead: the holder exits.
func (h *pauseHolder) abandon() { h.gate.Close() }

// missingCgroupDirs lists the directories of paths that do not exist yet,
// with their missing parents, deepest first.
func missingCgroupDirs(paths map[string]string) []string {
	seen := map[string]bool{}
	var dirs []string
	for _, p := range paths {
		for d := filepath.Clean(p); strings.HasPrefix(d, "/sys/fs/cgroup/"); d = filepath.Dir(d) {
			if _, err := os.Stat(d); err == nil {
				break
			}
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs
}

// writePodFiles writes the pod's /etc/hosts, /etc/resolv.conf and
// /etc/hostname.
func (m *Manager) writePodFiles(r *sandboxRecord) error {
	c := r.Config
	var hosts bytes.Buffer
	if c.Namespaces.Network == NamespaceNode {
		b, err := os.ReadFile("/etc/hosts")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read host's /etc/hosts: %w", err)
		}
		hosts.Write(b)
	} else {
		hosts.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
	}
	for _, h := range c.Hosts {
		fmt.Fprintf(&hosts, "%s\t%s\n", h.IP, strings.Join(h.Names, " "))
	}
	var resolv []byte
	if c.DNS == nil {
		b, err := os.ReadFile("/etc/resolv.conf")
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read host's /etc/resolv.conf: %w", err)
		}
		resolv = b
	} else {
		var b bytes.Buffer
		if len(c.DNS.Searches) > 0 {
			fmt.Fprintf(&b, "search %s\n", strings.Join(c.DNS.Searches, " "))
		}
		for _, s := range c.DNS.Servers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
		if len(c.DNS.Options) > 0 {
			fmt.Fprintf(&b, "options %s\n", strings.Join(c.DNS.Options, " "))
		}
		resolv = b.Bytes()
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{r.HostsPath, hosts.Bytes()},
		{r.ResolvConfPath, resolv},
		{r.HostnamePath, []byte(r.hostname() + "\n")},
	} {
		if err := atomicfile.Replace(f.path, f.data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// SetSandboxNetwork records the pod's IPs (after the caller's CNI ADD).
func (m *Manager) SetSandboxNetwork(ctx context.Context, id string, ips []string) error {
	s, err := m.getSandbox(id)
	if err != nil {
		return fmt.Errorf("set sandbox network: %w", err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	m.mu.Lock()
	s.rec.IPs = append([]string(nil), ips...)
	m.mu.Unlock()
	if err := m.saveSandbox(s); err != nil {
		return fmt.Errorf("set sandbox network %s: %w", s.rec.ID, err)
	}
	return nil
}

func (m *Manager) podContainers(id string) []*container {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*container
	for _, c := range m.containers {
		if c.rec.SandboxID == id {
			out = append(out, c)
		}
	}
	return out
}

// StopSandbox stops every container of the pod (each with its stop signal
// and a grace period of timeout, then SIGKILL), kills the pause holder and
// marks the pod NotReady. Namespaces and files stay until RemoveSandbox.
// Stopping a stopped or unknown sandbox succeeds.
func (m *Manager) StopSandbox(ctx context.Context, id string, timeout time.Duration) error {
	s, err := m.getSandbox(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stop sandbox: %w", err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	return m.stopSandbox(ctx, s, timeout)
}

func (m *Manager) stopSandbox(ctx context.Context, s *sandbox, timeout time.Duration) error {
	cs := m.podContainers(s.rec.ID)
	errs := make([]error, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.op.Lock()
			defer c.op.Unlock()
			errs[i] = m.stop(ctx, c, timeout)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", s.rec.ID, err)
	}
	m.mu.Lock()
	pid, start := s.rec.PausePid, s.rec.PauseStart
	m.mu.Unlock()
	if err := killPause(ctx, pid, start); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", s.rec.ID, err)
	}
	m.mu.Lock()
	s.rec.State = SandboxNotReady
	s.rec.PausePid = 0
	m.mu.Unlock()
	if err := m.saveSandbox(s); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", s.rec.ID, err)
	}
	return nil
}

// RemoveSandbox stops the pod if needed, removes its containers, unmounts
// its /dev/shm and pinned namespaces, and removes its directories and the
// cgroup directories Berth created. Removing an unknown sandbox succeeds.
func (m *Manager) RemoveSandbox(ctx context.Context, id string) error {
	s, err := m.getSandbox(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove sandbox: %w", err)
	}
	s.op.Lock()
	defer s.op.Unlock()
	for _, c := range m.podContainers(s.rec.ID) {
		c.op.Lock()
		err := m.remove(ctx, c)
		c.op.Unlock()
		if err != nil {
			return fmt.Errorf("remove sandbox %s: %w", s.rec.ID, err)
		}
	}
	if err := m.releaseSandbox(ctx, s); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", s.rec.ID, err)
	}
	m.mu.Lock()
	delete(m.sandboxes, s.rec.ID)
	m.mu.Unlock()
	return nil
}

// releaseSandbox undoes what a sandbox holds; each step tolerates what is
// already gone, and the record goes last.
func (m *Manager) releaseSandbox(ctx context.Context, s *sandbox) error {
	m.mu.Lock()
	r := s.rec
	m.mu.Unlock()
	st := steps.Start(ctx, "release sandbox")
	defer st.Log("id", r.ID)
	if err := killPause(ctx, r.PausePid, r.PauseStart); err != nil {
		return err
	}
	st.Done("pause")
	for _, p := range []string{m.nsPath("net", r.ID), m.nsPath("ipc", r.ID), m.nsPath("uts", r.ID), m.nsPath("user", r.ID)} {
		if err := namespace.Unpin(p); err != nil {
			return err
		}
	}
	st.Done("namespaces")
	if err := unmountAll(filepath.Join(s.dir, "shm")); err != nil {
		return err
	}
	st.Done("shm")
	if err := removeCgroupDirs(ctx, r.CgroupDirs); err != nil {
		return err
	}
	st.Done("cgroups")
	for _, f := range []string{"hosts", "resolv.conf", "hostname", "shm"} {
		if err := os.Remove(filepath.Join(s.dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove sandbox files: %w", err)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove sandbox directory: %w", err)
	}
	st.Done("files")
	return nil
}

// removeCgroupDirs removes dirs deepest first, with Berth's own empty
// children (see removeBerthChildren). A directory holding another owner's
// cgroups is shared with other pods (a parent Berth happened to create
// first) and is left to them. The kernel refuses an emptied cgroup (EBUSY)
// for a moment after its last process died, hence the retries.
func removeCgroupDirs(ctx context.Context, dirs []string) error {
	for _, d := range dirs {
		// The kernel lets go of a cgroup within a millisecond or two
		// mostly: retry soon, then every 20 ms.
		wait := time.Millisecond
		for i := 0; ; i++ {
			err := unix.Rmdir(d)
			if err == nil || errors.Is(err, unix.ENOENT) {
				break
			}
			if foreign, busy := removeBerthChildren(d); foreign {
				break // another owner's cgroup lives below: not ours to remove
			} else if busy {
				err = unix.EBUSY // our child is still emptying: wait as below
			}
			if !errors.Is(err, unix.EBUSY) || i == 100 {
				return fmt.Errorf("remove cgroup %s: %w", d, err)
			}
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return fmt.Errorf("remove cgroup %s: %w", d, ctx.Err())
			}
			wait = min(2*wait, 20*time.Millisecond)
		}
	}
	return nil
}

// killCgroup SIGKILLs every process of the cgroupfs cgroup rel in every
// hierarchy, waits for them to leave and removes its directories.
func killCgroup(ctx context.Context, rel string) error {
	if !filepath.IsAbs(rel) || strings.Contains(rel, "..") {
		return fmt.Errorf("kill cgroup %q: %w", rel, errdefs.ErrInvalidArgument)
	}
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + rel)
	if fi, err := os.Stat("/sys/fs/cgroup" + rel); err == nil && fi.IsDir() {
		dirs = append(dirs, "/sys/fs/cgroup"+rel)
	}
	for _, d := range dirs {
		for i := 0; ; i++ {
			b, err := os.ReadFile(filepath.Join(d, "cgroup.procs"))
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				break
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
					_ = unix.Kill(pid, unix.SIGKILL)
				}
			}
			if i == 250 {
				return fmt.Errorf("kill cgroup %s: processes left: %w", d, errdefs.ErrUnavailable)
			}
			select {
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return fmt.Errorf("kill cgroup %s: %w", d, ctx.Err())
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return removeCgroupDirs(ctx, dirs)
}

// removeBerthChildren removes the cgroups Berth made below dir (its
// containers' "berth-<id>" and the pause holder's) once they are empty: one
// whose process was still exiting when its container was deleted lingers a
// moment. The kernel refuses to remove a cgroup that has processes (busy);
// any other child is another owner's (foreign) and never touched.
func removeBerthChildren(dir string) (foreign, busy bool) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		switch {
		case !e.IsDir():
		case !strings.HasPrefix(e.Name(), "berth-"):
			foreign = true
		case unix.Rmdir(filepath.Join(dir, e.Name())) != nil:
			busy = true
		}
	}
	return foreign, busy
}

// procStart reads a process's start time (clock ticks after boot) and
// whether it is a zombie.
func procStart(pid int) (uint64, error) {
	start, _, err := procStat(pid)
	return start, err
}

func procStat(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat: %w", pid, errdefs.ErrUnknown)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("parse /proc/%d/stat: %w", pid, errdefs.ErrUnknown)
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0] == "Z" || f[0] == "X", err
}

// pauseAlive says whether pid still is the pause holder started at start.
func pauseAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	s, zombie, err := procStat(pid)
	return err == nil && !zombie && (start == 0 || s == start)
}

// killPause kills the pause holder (and with it every process of the pod's
// PID namespace) and waits for it to die.
func killPause(ctx context.Context, pid int, start uint64) error {
	if !pauseAlive(pid, start) {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kill pause holder %d: %w", pid, err)
	}
	defer unix.Close(fd)
	// Checked again through the pidfd's process: the PID may have been
	// recycled between the first check and pidfd_open.
	if !pauseAlive(pid, start) {
		return nil
	}
	if err := unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill pause holder %d: %w", pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if n > 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("wait for pause holder %d: %w", pid, err)
		}
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("wait for pause holder %d: %w", pid, errdefs.ErrUnavailable)
		}
	}
}
