// Package monitor is berth-shim's engine: the small, long-lived monitor of
// one container. It stays the parent of the container's processes (child
// subreaper), holds their stdio, writes the log file (runtime/logfile), records the init's
// exit status in the state directory and serves the runtime/shim/wire
// protocol on a unix socket there.
//
// It does not link libcontainer (its binary is built with CGO_ENABLED=0):
// create, start, exec, SIGKILL of a shared-PID-namespace container, update
// and delete run berth-runc (cmd/berth-runc, runtime/shim/libct), a
// short-lived helper that loads the container from libcontainer's state
// under the state directory, as containerd's shim runs the runc binary. The
// processes berth-runc starts are re-parented here when it exits.
// Statistics come from the cgroup files directly (runtime/shim/cgstat).
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
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/logfile"
	"github.com/berth-dev/berth/runtime/shim/cgstat"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// Options is what berthd passes on the shim's command line.
type Options struct {
	ID       string
	Bundle   string
	StateDir string
	// LogPath is the container's log file, written as Log says; empty
	// discards the output.
	LogPath string
	Log     wire.Log
	// Runc is the berth-runc executable.
	Runc string
	// Stdin keeps a pipe to the init's stdin open for attach; without it
	// the init reads /dev/null.
	Stdin bool
	// StdinOnce closes the init's stdin when the first attach that
	// streams stdin ends (CRI stdin_once); with a terminal, input stops
	// being forwarded instead (closing the terminal would hang it up).
	StdinOnce bool
	// CreateOnly leaves the init blocked before exec until OpStart (CRI's
	// CreateContainer / StartContainer split).
	CreateOnly bool
	// SeccompCache is the directory of compiled seccomp filters shared by
	// all containers (berth-runc create --seccomp-cache); may be empty.
	SeccompCache string
	// Ready receives one wire.Ready line once the shim serves or failed.
	Ready io.WriteCloser
}

// drainTimeout bounds how long an exit waits for the last output: a
// process left in the container (no PID namespace) may hold the pipe open.
const drainTimeout = 2 * time.Second

type monitor struct {
	opts     Options
	reaper   *reaper
	runc     *runc
	log      *logfile.Writer
	out      *fanout
	terminal bool
	// privatePID: the container has its own PID namespace, so a SIGKILL
	// of the init, sent directly, ends all its processes.
	privatePID  bool
	console     console.Console
	stdin       io.WriteCloser
	cgroupPaths map[string]string
	drained     sync.WaitGroup
	created     bool
	createdAt   time.Time

	mu        sync.Mutex
	pid       int
	startedAt time.Time
	// reaped is set as soon as the init's status is collected: from then
	// on its PID may be reused and must not be signalled.
	reaped   bool
	exit     *wire.Exit
	deleted  bool
	exited   chan struct{}
	shutdown chan struct{}
	// reapedCh is closed when reaped is set; initStatus is then the
	// init's wait status.
	reapedCh   chan struct{}
	initStatus unix.WaitStatus
	// stdinDone is set once a stdin_once attach ended; guarded by mu.
	stdinDone bool
	// paused is set while the container is frozen; guarded by mu.
	paused  bool
	startMu sync.Mutex
}

// Run creates the container and serves until a shutdown request. It
// returns the error that stopped it.
func Run(opts Options) error {
	m := &monitor{opts: opts, exited: make(chan struct{}), shutdown: make(chan struct{}), reapedCh: make(chan struct{}), out: newFanout()}
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
	if o.ID == "" || o.Bundle == "" || o.StateDir == "" || o.Runc == "" {
		return fmt.Errorf("shim needs an id, a bundle, a state dir and berth-runc: %w", errdefs.ErrInvalidArgument)
	}
	// Orphaned container processes (the init's re-parented children, the
	// init and exec'd processes after berth-runc and nsenter's intermediate
	// stages exit) must come to the shim, not to PID 1, or their exit
	// status is lost.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	// berthd wrote the pid file before it gave the job (shim.proc.give);
	// rewriting it would empty it for a moment in which a restarted
	// berthd could read no PID and leave this shim running.
	pidFile, self := filepath.Join(o.StateDir, wire.PidName), strconv.Itoa(os.Getpid())
	if b, err := os.ReadFile(pidFile); err != nil || string(b) != self {
		if err := os.WriteFile(pidFile, []byte(self), 0o644); err != nil {
			return fmt.Errorf("write shim pid: %w", err)
		}
	}
	m.reaper = newReaper()
	m.runc = &runc{binary: o.Runc, root: filepath.Join(o.StateDir, "libcontainer"), id: o.ID, reaper: m.reaper}
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
	if o.Ready != nil {
		writeReady(o.Ready, wire.Ready{Pid: m.pid})
	}
	go m.serve(l)
	<-m.shutdown
	return nil
}

// create has berth-runc create the container (and start it unless
// CreateOnly: one helper run instead of two).
func (m *monitor) create() (retErr error) {
	o := m.opts
	b, err := os.ReadFile(filepath.Join(o.Bundle, "config.json"))
	if err != nil {
		return fmt.Errorf("read bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	spec, err := parseBundleConfig(b)
	if err != nil {
		return err
	}
	m.terminal = spec.Process.Terminal
	m.privatePID = spec.privatePIDNamespace()
	if m.log, err = openLog(o.LogPath, o.Log); err != nil {
		return err
	}
	pio, err := newProcIO(ioOptions{terminal: m.terminal, stdin: o.Stdin})
	if err != nil {
		return err
	}
	args := append([]string{"--bundle", o.Bundle}, pio.args...)
	if !o.CreateOnly {
		args = append(args, "--start")
	}
	if o.SeccompCache != "" {
		args = append(args, "--seccomp-cache", o.SeccompCache)
	}
	// Taken before the process runs: one that exits at once must not
	// finish before it started.
	started := time.Now()
	res, err := m.runc.call(runcCall{op: "create", args: args, files: pio.childEnds, started: func(pid int) {
		m.mu.Lock()
		m.pid = pid
		if !o.CreateOnly {
			m.startedAt = started
		}
		m.mu.Unlock()
		m.reaper.watch(pid, m.onInitExit)
	}})
	pio.closeChildEnds()
	if err != nil {
		pio.close()
		return fmt.Errorf("create container %s: %w", o.ID, err)
	}
	m.created = true
	m.cgroupPaths = res.CgroupPaths
	m.createdAt = time.Now()
	defer func() {
		if retErr != nil {
			m.destroy()
		}
	}()
	if err := pio.receiveConsole(); err != nil {
		return err
	}
	m.console, m.stdin = pio.console, pio.stdin
	m.pumpInit(pio)
	return nil
}

// pumpInit copies the init's output to the log and to attached clients.
func (m *monitor) pumpInit(pio *procIO) {
	o := m.opts
	pump := func(r io.Reader, stream string, kind byte) {
		defer m.drained.Done()
		s := newSplitter(m.log, o.Log.Format, stream)
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
	// startMu, not mu: the init may exit while the fifo is opened, and
	// onInitExit needs mu to record that.
	m.startMu.Lock()
	defer m.startMu.Unlock()
	m.mu.Lock()
	startedAt, gone := m.startedAt, m.exit != nil || m.reaped
	m.mu.Unlock()
	if !startedAt.IsZero() {
		return fmt.Errorf("start container %s: already started: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	if gone {
		return fmt.Errorf("start container %s: init exited: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	started := time.Now()
	if err := m.openExecFifo(); err != nil {
		return fmt.Errorf("start container %s: %w", m.opts.ID, err)
	}
	m.mu.Lock()
	m.startedAt = started
	m.mu.Unlock()
	return nil
}

// execFifo is where libcontainer's init, once created, blocks opening the
// fifo for writing until someone opens it for reading; it then writes one
// byte and execs the process (runc's create/start contract since 1.0).
const execFifo = "exec.fifo"

// openExecFifo starts the created process as libcontainer's Exec does,
// without running berth-runc for it: StartContainer is on the pod start
// path, and a helper run costs ~4 ms there. Without the fifo (started
// already, or a libcontainer that works otherwise) berth-runc start
// decides, with libcontainer's own answer.
func (m *monitor) openExecFifo() error {
	path := filepath.Join(m.runc.root, m.opts.ID, execFifo)
	if _, err := os.Stat(path); err != nil {
		_, err := m.runc.call(runcCall{op: "start"})
		return err
	}
	type result struct {
		f   *os.File
		err error
	}
	ch := make(chan result, 1)
	go func() {
		f, err := os.OpenFile(path, os.O_RDONLY, 0)
		ch <- result{f, err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-m.reapedCh:
		// The init is gone, but it may have started the process first:
		// on a busy machine a process that exits at once is reaped before
		// the opener above runs again to report. So let the opener finish
		// (a writer of our own frees it if the init never opened the
		// fifo) and read the fifo: the init's byte there means the
		// process ran.
		deadline := time.Now().Add(drainTimeout)
		for res.f == nil && res.err == nil {
			if w, err := os.OpenFile(path, os.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
				w.Close()
				res = <-ch
				break
			}
			// ENXIO: the opener has not reached its open yet.
			select {
			case res = <-ch:
			case <-time.After(5 * time.Millisecond):
				if time.Now().After(deadline) {
					return fmt.Errorf("init exited before it was started (%s): %w", m.initEnd(), errdefs.ErrFailedPrecondition)
				}
			}
		}
	}
	if res.err != nil {
		return fmt.Errorf("open exec fifo: %w", res.err)
	}
	defer res.f.Close()
	// The init's byte, then EOF when its exec closes the fifo.
	b, err := io.ReadAll(res.f)
	if err != nil {
		return fmt.Errorf("read exec fifo: %w", err)
	}
	if len(b) == 0 {
		// The init let go of the fifo without its byte: it failed.
		select {
		case <-m.reapedCh:
			return fmt.Errorf("init exited before it started the process (%s): %w", m.initEnd(), errdefs.ErrFailedPrecondition)
		case <-time.After(drainTimeout):
			return fmt.Errorf("init closed the exec fifo without starting the process: %w", errdefs.ErrFailedPrecondition)
		}
	}
	// libcontainer tells created from running by the fifo's presence.
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove exec fifo: %w", err)
	}
	return nil
}

// initEnd says how the init ended, once reapedCh is closed.
func (m *monitor) initEnd() string {
	m.mu.Lock()
	ws := m.initStatus
	m.mu.Unlock()
	if ws.Signaled() {
		return "killed by " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

func (m *monitor) onInitExit(ws unix.WaitStatus) {
	finished := time.Now()
	m.mu.Lock()
	m.reaped = true
	m.initStatus = ws
	m.mu.Unlock()
	close(m.reapedCh)
	// A start in flight sees reapedCh and returns; its StartedAt belongs
	// in the exit record.
	m.startMu.Lock()
	m.startMu.Unlock()
	code, sig := exitCode(ws)
	waitTimeout(&m.drained, drainTimeout)
	if m.log != nil {
		// A non-blocking log's queue reaches the disk before the exit is
		// known: whoever reads the log after the exit sees all of it.
		m.log.Flush(drainTimeout)
	}
	// The kernel's counter, read after the exit, is exact where an OOM
	// event notification could arrive after the exit was seen.
	oomKilled := cgstat.OOMKills(m.cgroupPaths) > 0
	m.mu.Lock()
	e := &wire.Exit{Pid: m.pid, Code: code, Signal: sig, OOMKilled: oomKilled, StartedAt: m.startedAt, FinishedAt: finished}
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

// destroy kills what is left of the container and has berth-runc remove
// its state and cgroups. It is used on failed creation and by OpDelete.
func (m *monitor) destroy() error {
	if !m.created {
		return nil
	}
	m.mu.Lock()
	running := m.exit == nil && !m.reaped
	m.mu.Unlock()
	if running {
		_ = m.signal(unix.SIGKILL)
		select {
		case <-m.exited:
		case <-time.After(10 * time.Second):
		}
	}
	if _, err := m.runc.call(runcCall{op: "delete"}); err != nil {
		return fmt.Errorf("destroy container %s: %w", m.opts.ID, err)
	}
	return nil
}

func (m *monitor) state() wire.State {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := wire.State{
		ID: m.opts.ID, Pid: m.pid, ShimPid: os.Getpid(), Terminal: m.terminal,
		CreatedAt: m.createdAt, StartedAt: m.startedAt, Exit: m.exit,
		Status: wire.StatusStopped,
	}
	switch {
	case m.deleted || m.exit != nil || m.reaped:
	case m.startedAt.IsZero():
		s.Status = wire.StatusCreated
	case m.paused:
		s.Status = wire.StatusPaused
	default:
		s.Status = wire.StatusRunning
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
	// args pass childEnds to berth-runc.
	args []string
}

type ioOptions struct {
	terminal bool
	stdin    bool
}

// newProcIO makes the pipes, or the console socket, for a new process.
// childEnds are the ends the process gets, passed to berth-runc as its
// descriptors 3, 4, ... as args say.
func newProcIO(o ioOptions) (*procIO, error) {
	pio := &procIO{}
	if o.terminal {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("create console socket: %w", err)
		}
		pio.consoleSock = os.NewFile(uintptr(fds[0]), "console-parent")
		pio.childEnds = []*os.File{os.NewFile(uintptr(fds[1]), "console-child")}
		pio.args = stdioArgs([]string{"--console-fd"})
		return pio, nil
	}
	flags := []string{"--stdin-fd", "--stdout-fd", "--stderr-fd"}
	if o.stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("create stdin pipe: %w", err)
		}
		pio.stdin = w
		pio.childEnds = append(pio.childEnds, r)
	} else {
		flags = flags[1:]
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
	pio.args = stdioArgs(flags)
	return pio, nil
}

func (pio *procIO) receiveConsole() error {
	if pio.consoleSock == nil {
		return nil
	}
	defer pio.consoleSock.Close()
	f, err := recvFile(pio.consoleSock)
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
