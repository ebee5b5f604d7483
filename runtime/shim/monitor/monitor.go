// Package monitor is berth-shim's engine: it creates one container with
// libcontainer, stays its parent (child subreaper), holds its stdio, writes
// the CRI log, records the exit status in the state directory and serves
// the runtime/shim/wire protocol on a unix socket there. It must only be
// linked into the cgo shim binary, never into berthd.
package monitor

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// Options is what berthd passes on the shim's command line.
type Options struct {
	ID       string
	Bundle   string
	StateDir string
	LogPath  string
	// Stdin keeps a pipe to the init's stdin open for attach; without it
	// the init reads /dev/null.
	Stdin bool
	// CreateOnly leaves the init blocked before exec until OpStart (CRI's
	// CreateContainer / StartContainer split).
	CreateOnly bool
	// Ready receives one wire.Ready line once the shim serves or failed.
	Ready io.WriteCloser
}

// drainTimeout bounds how long an exit waits for the last output: a
// process left in the container (no PID namespace) may hold the pipe open.
const drainTimeout = 2 * time.Second

type monitor struct {
	opts      Options
	reaper    *reaper
	container *libcontainer.Container
	log       *criLog
	out       *fanout
	terminal  bool
	console   console.Console
	stdin     io.WriteCloser
	cgroupDir []string
	oom       atomic.Bool
	drained   sync.WaitGroup
	createdAt time.Time

	mu        sync.Mutex
	pid       int
	startedAt time.Time
	exit      *wire.Exit
	deleted   bool
	exited    chan struct{}
	shutdown  chan struct{}
}

// Run creates the container and serves until a shutdown request. It
// returns the error that stopped it.
func Run(opts Options) error {
	m := &monitor{opts: opts, exited: make(chan struct{}), shutdown: make(chan struct{}), out: newFanout()}
	err := m.run()
	if err != nil && opts.Ready != nil {
		writeReady(opts.Ready, wire.Ready{Error: err.Error(), Class: wire.Class(err)})
	}
	return err
}

func writeReady(w io.WriteCloser, r wire.Ready) {
	b, _ := json.Marshal(r)
	_, _ = w.Write(append(b, '\n'))
	_ = w.Close()
}

func (m *monitor) run() error {
	o := m.opts
	if o.ID == "" || o.Bundle == "" || o.StateDir == "" {
		return fmt.Errorf("shim needs an id, a bundle and a state dir: %w", errdefs.ErrInvalidArgument)
	}
	// Orphaned container processes (the init's re-parented children, the
	// init itself after nsenter's intermediate stages exit) must come to
	// the shim, not to PID 1, or their exit status is lost.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(o.StateDir, wire.PidName), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return fmt.Errorf("write shim pid: %w", err)
	}
	m.reaper = newReaper()
	if err := m.create(); err != nil {
		return err
	}
	sock := filepath.Join(o.StateDir, wire.SocketName)
	_ = os.Remove(sock)
	l, err := net.Listen("unix", sock)
	if err != nil {
		m.destroy()
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	defer os.Remove(sock)
	defer l.Close()
	if !o.CreateOnly {
		if err := m.start(); err != nil {
			m.destroy()
			return err
		}
	}
	if o.Ready != nil {
		writeReady(o.Ready, wire.Ready{Pid: m.pid})
	}
	go m.serve(l)
	<-m.shutdown
	return nil
}

func (m *monitor) create() (retErr error) {
	o := m.opts
	b, err := os.ReadFile(filepath.Join(o.Bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("read bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return fmt.Errorf("parse bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if spec.Process == nil {
		return fmt.Errorf("bundle config has no process: %w", errdefs.ErrInvalidArgument)
	}
	// specconv resolves a relative root path against the working directory,
	// as runc does from inside the bundle.
	if err := os.Chdir(o.Bundle); err != nil {
		return fmt.Errorf("enter bundle: %w", err)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: o.ID, Spec: &spec})
	if err != nil {
		return fmt.Errorf("convert bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if m.cgroupDir, err = missingCgroupDirs(cfg.Cgroups); err != nil {
		return err
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return err
	}
	proc.Init = true
	m.terminal = spec.Process.Terminal
	if m.log, err = openLog(o.LogPath); err != nil {
		return err
	}
	c, err := libcontainer.Create(filepath.Join(o.StateDir, "libcontainer"), o.ID, cfg)
	if err != nil {
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	m.container = c
	defer func() {
		if retErr != nil {
			m.destroy()
		}
	}()
	pio, err := newProcIO(proc, ioOptions{terminal: m.terminal, stdin: o.Stdin})
	if err != nil {
		return err
	}
	err = m.reaper.do(func() error {
		if err := c.Start(proc); err != nil {
			return err
		}
		pid, err := proc.Pid()
		if err != nil {
			return err
		}
		m.pid = pid
		m.reaper.watch(pid, m.onInitExit)
		return nil
	})
	pio.closeChildEnds()
	if err != nil {
		pio.close()
		return fmt.Errorf("start container %s init: %w", o.ID, err)
	}
	m.createdAt = time.Now()
	if err := pio.receiveConsole(); err != nil {
		return err
	}
	m.console, m.stdin = pio.console, pio.stdin
	m.pumpInit(pio)
	if ch, err := c.NotifyOOM(); err == nil {
		go func() {
			for range ch {
				m.oom.Store(true)
			}
		}()
	}
	return nil
}

// pumpInit copies the init's output to the log and to attached clients.
func (m *monitor) pumpInit(pio *procIO) {
	pump := func(r io.Reader, stream string, kind byte) {
		defer m.drained.Done()
		s := &lineSplitter{log: m.log, stream: stream}
		buf := make([]byte, 32*1024)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				s.write(buf[:n])
				m.out.send(kind, buf[:n])
			}
			if err != nil {
				s.flush()
				return
			}
		}
	}
	if pio.console != nil {
		m.drained.Add(1)
		go pump(pio.console, "stdout", wire.FrameStdout)
		return
	}
	m.drained.Add(2)
	go pump(pio.stdout, "stdout", wire.FrameStdout)
	go pump(pio.stderr, "stderr", wire.FrameStderr)
}

func (m *monitor) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.startedAt.IsZero() {
		return fmt.Errorf("start container %s: already started: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	if m.exit != nil {
		return fmt.Errorf("start container %s: init exited: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	// Taken before Exec: a process that exits at once must not finish
	// before it started.
	started := time.Now()
	if err := m.reaper.do(m.container.Exec); err != nil {
		return fmt.Errorf("start container %s: %w", m.opts.ID, err)
	}
	m.startedAt = started
	return nil
}

func (m *monitor) onInitExit(ws unix.WaitStatus) {
	finished := time.Now()
	code, sig := exitCode(ws)
	waitTimeout(&m.drained, drainTimeout)
	oom := m.oom.Load()
	if st, err := m.container.State(); err == nil && oomKills(st.CgroupPaths) > 0 {
		oom = true
	}
	m.mu.Lock()
	e := &wire.Exit{Pid: m.pid, Code: code, Signal: sig, OOMKilled: oom, StartedAt: m.startedAt, FinishedAt: finished}
	m.exit = e
	m.mu.Unlock()
	if err := writeExit(m.opts.StateDir, e); err != nil {
		fmt.Fprintf(os.Stderr, "record exit of container %s: %v\n", m.opts.ID, err)
	}
	if m.stdin != nil && m.console == nil {
		_ = m.stdin.Close()
	}
	close(m.exited)
	m.out.exit(e)
}

func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// writeExit stores e atomically so that berthd, even after a crash, reads
// either nothing or the whole record.
func writeExit(dir string, e *wire.Exit) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".exit-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), filepath.Join(dir, wire.ExitName)); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// destroy kills what is left of the container and removes its state and
// cgroups. It is used on failed creation and by OpDelete.
func (m *monitor) destroy() error {
	if m.container == nil {
		return nil
	}
	if st, err := m.container.Status(); err == nil && st != libcontainer.Stopped {
		_ = m.reaper.do(func() error { return m.container.Signal(unix.SIGKILL) })
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
		}
	}
	err := m.reaper.do(m.container.Destroy)
	if err != nil {
		return fmt.Errorf("destroy container %s: %w", m.opts.ID, err)
	}
	return removeCgroupDirs(m.cgroupDir)
}

func (m *monitor) state() wire.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := wire.State{
		ID: m.opts.ID, Pid: m.pid, ShimPid: os.Getpid(), Terminal: m.terminal,
		CreatedAt: m.createdAt, StartedAt: m.startedAt, Exit: m.exit,
		Status: wire.StatusStopped,
	}
	if m.deleted || m.exit != nil {
		return s
	}
	st, err := m.container.Status()
	if err != nil {
		return s
	}
	switch st {
	case libcontainer.Created:
		s.Status = wire.StatusCreated
	case libcontainer.Running:
		s.Status = wire.StatusRunning
	case libcontainer.Paused:
		s.Status = wire.StatusPaused
	}
	return s
}

// procIO is the host side of a process's stdio.
type procIO struct {
	stdin          io.WriteCloser
	stdout, stderr *os.File
	console        console.Console
	childEnds      []*os.File
	consoleSock    *os.File
}

type ioOptions struct {
	terminal bool
	stdin    bool
}

func newProcIO(p *libcontainer.Process, o ioOptions) (*procIO, error) {
	pio := &procIO{}
	if o.terminal {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return nil, fmt.Errorf("create console socket: %w", err)
		}
		p.ConsoleSocket = child
		pio.consoleSock = parent
		pio.childEnds = append(pio.childEnds, child)
		return pio, nil
	}
	if o.stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create stdin pipe: %w", err)
		}
		p.Stdin = r
		pio.stdin = w
		pio.childEnds = append(pio.childEnds, r)
	}
	for _, out := range []**os.File{&pio.stdout, &pio.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			pio.closeChildEnds()
			pio.close()
			return nil, fmt.Errorf("create output pipe: %w", err)
		}
		*out = r
		pio.childEnds = append(pio.childEnds, w)
	}
	// Passing *os.File makes os/exec hand the fds over as they are, with no
	// copying goroutine that would need a Wait the reaper cannot allow.
	p.Stdout = pio.childEnds[len(pio.childEnds)-2]
	p.Stderr = pio.childEnds[len(pio.childEnds)-1]
	return pio, nil
}

func (pio *procIO) receiveConsole() error {
	if pio.consoleSock == nil {
		return nil
	}
	defer pio.consoleSock.Close()
	f, err := utils.RecvFile(pio.consoleSock)
	if err != nil {
		return fmt.Errorf("receive console: %w", err)
	}
	c, err := console.ConsoleFromFile(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("use console: %w", err)
	}
	pio.console = c
	pio.stdin = c
	return nil
}

func (pio *procIO) closeChildEnds() {
	for _, f := range pio.childEnds {
		_ = f.Close()
	}
	pio.childEnds = nil
}

func (pio *procIO) close() {
	for _, c := range []io.Closer{pio.stdout, pio.stderr, pio.consoleSock} {
		if c != nil && !isNilFile(c) {
			_ = c.Close()
		}
	}
	if pio.stdin != nil {
		_ = pio.stdin.Close()
	}
}

func isNilFile(c io.Closer) bool {
	f, ok := c.(*os.File)
	return ok && f == nil
}
