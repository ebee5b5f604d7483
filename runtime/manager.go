package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime/namespace"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
	"github.com/berth-dev/berth/runtime/spec"
)

// Manager runs sandboxes and containers. It is safe for concurrent use.
//
// A Manager is a view scoped to one owner (Owned) or, as Open returns it,
// to all of them. A scoped view lists, finds, changes and reports events of
// its owner's sandboxes and containers only, and stamps its owner on what
// it creates: the CRI never sees the engine's containers and the other way
// round, and the kubelet's garbage collector cannot remove what it does not
// own.
type Manager struct {
	*state
	// owner is the view's owner; "" sees every owner.
	owner string
}

// state is what every view of one Manager shares.
type state struct {
	cfg      Config
	oomFloor int
	cgroupV2 bool
	// cgroups decide which limits runc can apply here (see fit).
	cgroups hostCgroups
	warmer  *migrationWarmer
	// launcher starts the containers' shims, with one kept on standby.
	launcher *shim.Launcher

	// mu guards the maps and every record's fields.
	mu         sync.Mutex
	sandboxes  map[string]*sandbox
	containers map[string]*container

	events broker

	// closed ends the exit watchers; Close waits for them.
	closed    chan struct{}
	closeOnce sync.Once
	watchers  sync.WaitGroup
}

// sandboxRecord is what sandboxes/<id>/sandbox.json holds.
type sandboxRecord struct {
	Sandbox
	// Pending is set while CreateSandbox runs; Open undoes a pending
	// sandbox (berthd died before acknowledging it).
	Pending bool `json:",omitempty"`
	// CgroupDirs are the pod cgroup directories Berth created, deepest
	// first; RemoveSandbox removes them.
	CgroupDirs []string `json:",omitempty"`
	// CgroupParent is the pod's cgroup in effect: the configured one, or
	// one Berth made for a pod that gave none (cgroupfs driver).
	CgroupParent string `json:",omitempty"`
	// PauseStart is the pause holder's start time in clock ticks after
	// boot, so a recycled PID is never taken for it.
	PauseStart uint64 `json:",omitempty"`
}

type sandbox struct {
	// op serialises the pod's lifecycle operations.
	op  sync.Mutex
	rec sandboxRecord
	dir string
}

// containerRecord is what containers/<id>/container.json holds.
type containerRecord struct {
	Container
	Pending bool `json:",omitempty"`
	// ShimDir is the shim's state directory (short, for its socket).
	ShimDir string
	// CgroupsPath is the container's cgroup as given to the shim; Remove
	// empties and removes it itself when the shim is gone.
	CgroupsPath string `json:",omitempty"`
}

type container struct {
	op     sync.Mutex
	rec    containerRecord
	client *shim.Client
	// exited is closed once the exit is recorded.
	exited chan struct{}
	// unwatch stops the exit watcher (for Remove).
	unwatch context.CancelFunc
	// process is the bundle's process, decoded once for execs (the
	// bundle never changes; decoding it, seccomp profile and all, was
	// most of an exec's cost here). Guarded by Manager.mu.
	process *specs.Process
}

func (m *Manager) sandboxDir(id string) string {
	return filepath.Join(m.cfg.Root, "sandboxes", id)
}

func (m *Manager) containerDir(id string) string {
	return filepath.Join(m.cfg.Root, "containers", id)
}

// seccompCacheDir keeps the compiled seccomp filters the shims' berth-runc
// share (runtime/shim/libct): a state directory is cleared at boot, when
// the kernel, which the programs depend on, may have changed.
func (m *Manager) seccompCacheDir() string {
	return filepath.Join(m.cfg.StateDir, "seccomp-cache")
}

func (m *Manager) nsPath(kind, id string) string {
	return filepath.Join(m.cfg.StateDir, "ns", kind, id)
}

// Open loads every record under cfg.Root, reconnects to the shims still
// running, records the exits of containers that ended while no Manager ran
// (from their exit files; code 255, reason "Unknown" when a shim vanished
// without one) and starts watching every live container's exit. Sandboxes
// and containers whose creation never completed are undone.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	m := &Manager{state: &state{
		cfg:        cfg,
		sandboxes:  map[string]*sandbox{},
		containers: map[string]*container{},
		closed:     make(chan struct{}),
		warmer:     newMigrationWarmer(),
		launcher:   shim.NewLauncher(cfg.ShimBinary),
	}}
	if cfg.OOMScoreAdjFloor != nil {
		m.oomFloor = *cfg.OOMScoreAdjFloor
	} else {
		n, err := spec.CurrentOOMScoreAdj()
		if err != nil {
			return nil, fmt.Errorf("open runtime: %w", err)
		}
		m.oomFloor = n
	}
	m.cgroups = probeCgroups()
	m.cgroupV2 = m.cgroups.v2
	for _, d := range []string{
		filepath.Join(cfg.Root, "sandboxes"), filepath.Join(cfg.Root, "containers"),
		filepath.Join(cfg.StateDir, "c"),
		m.nsPath("net", ""), m.nsPath("ipc", ""), m.nsPath("uts", ""), m.nsPath("user", ""),
	} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return nil, fmt.Errorf("open runtime: %w", err)
		}
	}
	// Containers first: undoing a half-created sandbox removes its
	// containers before its cgroup.
	if err := m.loadContainers(ctx); err != nil {
		return nil, err
	}
	if err := m.loadSandboxes(ctx); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) loadSandboxes(ctx context.Context) error {
	return eachRecord(filepath.Join(m.cfg.Root, "sandboxes"), "sandbox.json", func(id string, rec sandboxRecord) error {
		if rec.Config.Owner == "" {
			// Recorded before owners existed, when the CRI was the only front.
			rec.Config.Owner = OwnerCRI
		}
		s := &sandbox{dir: m.sandboxDir(id), rec: rec}
		if s.rec.Pending {
			if s.rec.NetNSPath != "" && m.cfg.ReleaseNetwork != nil {
				// While the namespace is still pinned.
				if err := m.cfg.ReleaseNetwork(ctx, id, s.rec.NetNSPath); err != nil {
					logctx.From(ctx).WarnContext(ctx, "release the network of half-created sandbox", "id", id, "error", err)
				}
			}
			for _, c := range m.podContainers(id) {
				if err := m.remove(ctx, c); err != nil {
					logctx.From(ctx).WarnContext(ctx, "remove container of half-created sandbox", "id", c.rec.ID, "error", err)
				}
			}
			if err := m.releaseSandbox(ctx, s); err != nil {
				logctx.From(ctx).WarnContext(ctx, "undo half-created sandbox", "id", id, "error", err)
			}
			return nil
		}
		lost := s.rec.PausePid != 0 && !pauseAlive(s.rec.PausePid, s.rec.PauseStart)
		for _, p := range []string{s.rec.NetNSPath, s.rec.IPCNSPath, s.rec.UTSNSPath} {
			// After a reboot the pins under the state dir are gone.
			lost = lost || (p != "" && !namespace.Pinned(p))
		}
		if s.rec.State == SandboxReady && lost {
			// The pod's namespaces died (with their holder, or a reboot):
			// it cannot run containers any more.
			s.rec.State = SandboxNotReady
			s.rec.PausePid = 0
			if err := m.saveSandbox(s); err != nil {
				return fmt.Errorf("open runtime: %w", err)
			}
		}
		m.sandboxes[id] = s
		return nil
	})
}

func (m *Manager) loadContainers(ctx context.Context) error {
	return eachRecord(filepath.Join(m.cfg.Root, "containers"), "container.json", func(id string, rec containerRecord) error {
		if rec.Config.Owner == "" {
			rec.Config.Owner = OwnerCRI
		}
		c := &container{exited: make(chan struct{}), rec: rec}
		if !c.rec.Pending && c.rec.User == nil {
			// A record from before the runtime kept the resolved user:
			// the bundle still has it.
			if sp, err := readBundleSpec(c.rec.Bundle); err == nil {
				c.rec.User = processUser(sp)
			}
		}
		if c.rec.Pending {
			if err := m.releaseContainer(ctx, c); err != nil {
				logctx.From(ctx).WarnContext(ctx, "undo half-created container", "id", id, "error", err)
			}
			return nil
		}
		m.containers[id] = c
		if c.rec.State == ContainerExited {
			close(c.exited)
			return nil
		}
		cl, err := shim.Connect(ctx, c.rec.ShimDir)
		if err != nil {
			// The shim is gone, or was still creating the container when
			// berthd died (it goes now): its exit file, if any, says how
			// the container ended.
			if err := shim.KillStray(ctx, c.rec.ShimDir); err != nil {
				logctx.From(ctx).WarnContext(ctx, "kill unreachable shim", "id", id, "error", err)
			}
			m.applyExit(c, m.exitAfterLoss(c))
			if err := m.saveContainer(c); err != nil {
				return fmt.Errorf("open runtime: %w", err)
			}
			close(c.exited)
			return nil
		}
		c.client = cl
		st, err := cl.State(ctx)
		if err == nil && st.Exit != nil {
			m.applyExit(c, *st.Exit)
			if err := m.saveContainer(c); err != nil {
				return fmt.Errorf("open runtime: %w", err)
			}
			close(c.exited)
			return nil
		}
		if err == nil {
			// Paused or resumed while berthd was away (or before the
			// record was written).
			c.rec.Paused = st.Status == wire.StatusPaused
		}
		if err == nil && (st.Status == wire.StatusRunning || st.Status == wire.StatusPaused) && c.rec.State == ContainerCreated {
			// Started, but berthd died before recording it.
			c.rec.State = ContainerRunning
			c.rec.StartedAt = st.StartedAt
			c.rec.Pid = st.Pid
			if err := m.saveContainer(c); err != nil {
				return fmt.Errorf("open runtime: %w", err)
			}
		}
		m.watch(ctx, c)
		return nil
	})
}

// eachRecord reads file in every <id> directory below dir and calls fn
// with the record, stopping at its first error. A directory without a
// record, or whose record an unsynced write left empty (errUnsynced), is a
// creation that died before its first record: it is removed. A record that
// does not decode is data loss.
func eachRecord[T any](dir, file string, fn func(id string, rec T) error) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("open runtime: %w", err)
	}
	for _, e := range ents {
		id := e.Name()
		if checkID(id) != nil {
			continue
		}
		var rec T
		err := readJSON(filepath.Join(dir, id, file), &rec)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, errUnsynced) {
			_ = os.RemoveAll(filepath.Join(dir, id))
			continue
		}
		if err != nil {
			return fmt.Errorf("open runtime: load %s: %w", filepath.Join(dir, id), err)
		}
		if err := fn(id, rec); err != nil {
			return err
		}
	}
	return nil
}

// Close stops watching the containers; the shims and containers keep
// running and a later Open finds them.
func (m *Manager) Close() error {
	m.closeOnce.Do(func() { close(m.closed) })
	m.launcher.Close()
	m.watchers.Wait()
	m.events.closeAll()
	return nil
}

// CgroupDriver reports the driver in use ("cgroupfs" or "systemd").
func (m *Manager) CgroupDriver() string { return m.cfg.CgroupDriver }

// Ready reports why no container can start here (the shim or its
// berth-runc is missing or not executable), or nil. It is checked on each
// call: installing the binaries later makes the runtime ready without a
// restart.
func (m *Manager) Ready() error {
	if err := shim.Check(m.cfg.ShimBinary); err != nil {
		return fmt.Errorf("runtime not ready: %w", err)
	}
	return nil
}

// saveSandbox writes the pod's record durably; noteSandbox only
// atomically, for the records of a creation under way (see writeJSON).
func (m *Manager) saveSandbox(s *sandbox) error { return m.writeSandbox(s, writeJSON) }

func (m *Manager) noteSandbox(s *sandbox) error { return m.writeSandbox(s, noteJSON) }

func (m *Manager) writeSandbox(s *sandbox, write func(string, any) error) error {
	m.mu.Lock()
	rec := s.rec
	m.mu.Unlock()
	return write(filepath.Join(s.dir, "sandbox.json"), rec)
}

// saveContainer and noteContainer are saveSandbox and noteSandbox for a
// container.
func (m *Manager) saveContainer(c *container) error { return m.writeContainer(c, writeJSON) }

func (m *Manager) noteContainer(c *container) error { return m.writeContainer(c, noteJSON) }

func (m *Manager) writeContainer(c *container, write func(string, any) error) error {
	m.mu.Lock()
	rec := c.rec
	m.mu.Unlock()
	return write(filepath.Join(m.containerDir(rec.ID), "container.json"), rec)
}

// Owned returns a view of m scoped to owner (OwnerCRI, OwnerEngine,
// OwnerBuilder, or any other name a front chooses): it shares m's state and
// sees only what owner created.
func (m *Manager) Owned(owner string) *Manager {
	return &Manager{state: m.state, owner: owner}
}

// sees reports whether the view sees what owner owns.
func (m *Manager) sees(owner string) bool { return m.owner == "" || owner == m.owner }

// stamp returns the owner a creation of this view records: the view's, or
// for the unscoped view the one asked (OwnerCRI when none is).
func (m *Manager) stamp(asked string) (string, error) {
	switch {
	case m.owner != "" && asked != "" && asked != m.owner:
		return "", fmt.Errorf("owner %q asked of a view of owner %q: %w", asked, m.owner, errdefs.ErrInvalidArgument)
	case m.owner != "":
		return m.owner, nil
	case asked != "":
		return asked, nil
	}
	return OwnerCRI, nil
}

// lookup finds the one key of ids equal to id or starting with it, among
// the values keep accepts.
func lookup[T any](ids map[string]T, id, what string, keep func(T) bool) (T, error) {
	var zero T
	if v, ok := ids[id]; ok && keep(v) {
		return v, nil
	}
	if id == "" {
		return zero, fmt.Errorf("%s with empty id: %w", what, errdefs.ErrNotFound)
	}
	var found []string
	for k, v := range ids {
		if strings.HasPrefix(k, id) && keep(v) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return zero, fmt.Errorf("%s %s: %w", what, id, errdefs.ErrNotFound)
	case 1:
		return ids[found[0]], nil
	}
	return zero, fmt.Errorf("%s %s: prefix matches %d: %w", what, id, len(found), errdefs.ErrInvalidArgument)
}

func (m *Manager) seesSandbox(s *sandbox) bool     { return m.sees(s.rec.Config.Owner) }
func (m *Manager) seesContainer(c *container) bool { return m.sees(c.rec.Config.Owner) }

func (m *Manager) getSandbox(id string) (*sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookup(m.sandboxes, id, "sandbox", m.seesSandbox)
}

func (m *Manager) getContainer(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return lookup(m.containers, id, "container", m.seesContainer)
}

func copySandbox(r sandboxRecord) *Sandbox {
	s := r.Sandbox
	s.IPs = append([]string(nil), s.IPs...)
	return &s
}

// Sandbox returns the sandbox whose ID is id or starts with it (a prefix
// must match exactly one).
func (m *Manager) Sandbox(id string) (*Sandbox, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s, err := lookup(m.sandboxes, id, "sandbox", m.seesSandbox)
	if err != nil || s.rec.Pending {
		return nil, orNotFound(err, "sandbox", id)
	}
	return copySandbox(s.rec), nil
}

func orNotFound(err error, what, id string) error {
	if err != nil {
		return err
	}
	return fmt.Errorf("%s %s: %w", what, id, errdefs.ErrNotFound)
}

// ListSandboxes returns every sandbox the view sees, oldest first.
func (m *Manager) ListSandboxes() []*Sandbox {
	m.mu.Lock()
	var out []*Sandbox
	for _, s := range m.sandboxes {
		if !s.rec.Pending && m.seesSandbox(s) {
			out = append(out, copySandbox(s.rec))
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// Container returns the container whose ID is id or starts with it.
func (m *Manager) Container(id string) (*Container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := lookup(m.containers, id, "container", m.seesContainer)
	if err != nil || c.rec.Pending {
		return nil, orNotFound(err, "container", id)
	}
	v := c.rec.Container
	return &v, nil
}

// ListContainers returns every container the view sees, oldest first.
func (m *Manager) ListContainers() []*Container {
	m.mu.Lock()
	var out []*Container
	for _, c := range m.containers {
		if !c.rec.Pending && m.seesContainer(c) {
			v := c.rec.Container
			out = append(out, &v)
		}
	}
	m.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out
}

// broker fans events out to subscribers, each with the owner its view
// sees ("" for all).
type broker struct {
	mu   sync.Mutex
	subs map[chan Event]string
}

func (b *broker) publish(e Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch, owner := range b.subs {
		if owner != "" && owner != e.Owner {
			continue
		}
		select {
		case ch <- e:
		default:
		}
	}
}

func (b *broker) closeAll() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs {
		close(ch)
		delete(b.subs, ch)
	}
}

// Subscribe returns the view's container events from now on until ctx ends or the
// Manager closes (the channel is then closed). A subscriber that falls more
// than 1024 events behind loses events rather than blocking the Manager.
func (m *Manager) Subscribe(ctx context.Context) <-chan Event {
	ch := make(chan Event, 1024)
	m.events.mu.Lock()
	if m.events.subs == nil {
		m.events.subs = map[chan Event]string{}
	}
	m.events.subs[ch] = m.owner
	m.events.mu.Unlock()
	context.AfterFunc(ctx, func() {
		m.events.mu.Lock()
		defer m.events.mu.Unlock()
		if _, ok := m.events.subs[ch]; ok {
			delete(m.events.subs, ch)
			close(ch)
		}
	})
	return ch
}

func (m *Manager) emit(c *container, t EventType) {
	m.mu.Lock()
	e := Event{ContainerID: c.rec.ID, SandboxID: c.rec.SandboxID, Owner: c.rec.Config.Owner, Type: t, Time: time.Now()}
	m.mu.Unlock()
	m.events.publish(e)
}
