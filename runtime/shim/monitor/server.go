package monitor

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/containerd/console"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/cgstat"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

func (m *monitor) serve(l net.Listener) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go m.handle(conn)
	}
}

func (m *monitor) handle(conn net.Conn) {
	defer conn.Close()
	// The request line is small; a bufio.Reader could swallow the first
	// stream frames, so read byte by byte up to the newline.
	line, err := readLine(conn, 1<<20)
	if err != nil {
		return
	}
	var req wire.Request
	if err := json.Unmarshal(line, &req); err != nil {
		reply(conn, wire.Response{}, fmt.Errorf("decode request: %w: %w", errdefs.ErrInvalidArgument, err))
		return
	}
	switch req.Op {
	case wire.OpExec:
		m.exec(conn, req)
		return
	case wire.OpAttach:
		m.attach(conn, req)
		return
	case wire.OpWait:
		m.wait(conn)
		return
	}
	resp, err := m.do(req)
	reply(conn, resp, err)
	if req.Op == wire.OpShutdown && err == nil {
		close(m.shutdown)
	}
}

func (m *monitor) do(req wire.Request) (wire.Response, error) {
	switch req.Op {
	case wire.OpState:
		s := m.state()
		return wire.Response{State: &s}, nil
	case wire.OpStart:
		// The state comes along: berthd records the start time and PID
		// without a second request.
		err := m.start()
		st := m.state()
		return wire.Response{Pid: st.Pid, State: &st}, err
	case wire.OpSignal:
		return wire.Response{}, m.signal(unix.Signal(req.Signal))
	case wire.OpResize:
		if req.Size == nil {
			return wire.Response{}, fmt.Errorf("resize without size: %w", errdefs.ErrInvalidArgument)
		}
		if m.console == nil {
			return wire.Response{}, fmt.Errorf("resize container %s: no terminal: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
		}
		return wire.Response{}, m.console.Resize(console.WinSize{Width: req.Size.Width, Height: req.Size.Height})
	case wire.OpStats:
		s, err := m.stats()
		return wire.Response{Stats: s}, err
	case wire.OpUpdate:
		return wire.Response{}, m.update(req.Resources)
	case wire.OpReopenLog:
		if m.log == nil {
			return wire.Response{}, nil
		}
		return wire.Response{}, m.log.Reopen()
	case wire.OpDelete:
		return wire.Response{}, m.delete(req.Force)
	case wire.OpPause:
		return wire.Response{}, m.freeze(true)
	case wire.OpResume:
		return wire.Response{}, m.freeze(false)
	case wire.OpShutdown:
		m.mu.Lock()
		defer m.mu.Unlock()
		if !m.deleted && m.exit == nil {
			return wire.Response{}, fmt.Errorf("shut down shim of %s: container still running: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
		}
		return wire.Response{}, nil
	}
	return wire.Response{}, fmt.Errorf("operation %q: %w", req.Op, errdefs.ErrNotImplemented)
}

func reply(w io.Writer, resp wire.Response, err error) {
	if err != nil {
		resp = wire.Response{Error: err.Error(), Class: wire.Class(err)}
	}
	b, _ := json.Marshal(resp)
	_, _ = w.Write(append(b, '\n'))
}

func readLine(r io.Reader, limit int) ([]byte, error) {
	var line []byte
	var b [1]byte
	for len(line) < limit {
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return nil, err
		}
		if b[0] == '\n' {
			return line, nil
		}
		line = append(line, b[0])
	}
	return nil, fmt.Errorf("request line over %d bytes: %w", limit, errdefs.ErrInvalidArgument)
}

func (m *monitor) signal(sig unix.Signal) error {
	m.mu.Lock()
	gone := m.deleted || m.exit != nil || m.reaped
	pid, paused := m.pid, m.paused
	m.mu.Unlock()
	if gone {
		return fmt.Errorf("signal container %s: %w", m.opts.ID, errdefs.ErrNotFound)
	}
	if sig == unix.SIGKILL && (!m.privatePID || paused) {
		// Without its own PID namespace the container's other processes
		// survive their init: berth-runc kills the whole cgroup. A frozen
		// process dies only once thawed (cgroup v1), which libcontainer's
		// SIGKILL does.
		if _, err := m.runc.call(runcCall{op: "kill", args: []string{"--signal", strconv.Itoa(int(sig))}}); err != nil {
			return fmt.Errorf("signal container %s: %w", m.opts.ID, err)
		}
		m.mu.Lock()
		m.paused = false
		m.mu.Unlock()
		return nil
	}
	// The init is this process's child until reaped (checked above under
	// the same rule as onInitExit), so its PID cannot have been reused:
	// no helper needed.
	if err := unix.Kill(pid, sig); err != nil {
		if err == unix.ESRCH {
			return fmt.Errorf("signal container %s: %w: %w", m.opts.ID, errdefs.ErrNotFound, err)
		}
		return fmt.Errorf("signal container %s: %w", m.opts.ID, err)
	}
	return nil
}

func (m *monitor) wait(conn net.Conn) {
	closed := make(chan struct{})
	go func() {
		// A client that gives up closes the connection.
		_, _ = io.Copy(io.Discard, conn)
		close(closed)
	}()
	select {
	case <-m.exited:
		m.mu.Lock()
		e := m.exit
		m.mu.Unlock()
		reply(conn, wire.Response{Exit: e}, nil)
	case <-closed:
	}
}

// stats reads the container's cgroup itself (cgstat): no berth-runc run.
func (m *monitor) stats() (*wire.Stats, error) {
	if len(m.cgroupPaths) == 0 {
		return nil, fmt.Errorf("stats of container %s: no cgroup known: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	s, err := cgstat.Read(m.cgroupPaths)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", m.opts.ID, err)
	}
	return s, nil
}

func (m *monitor) update(r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("update without resources: %w", errdefs.ErrInvalidArgument)
	}
	if _, err := m.runc.call(runcCall{op: "update", input: r}); err != nil {
		return fmt.Errorf("update resources of container %s: %w", m.opts.ID, err)
	}
	return nil
}

// freeze pauses (true) or resumes (false) the running container through
// berth-runc (libcontainer's freezer).
func (m *monitor) freeze(pause bool) error {
	m.mu.Lock()
	running := m.exit == nil && !m.reaped && !m.deleted && !m.startedAt.IsZero()
	paused := m.paused
	m.mu.Unlock()
	op, what := "pause", "pause"
	if !pause {
		op, what = "resume", "unpause"
	}
	switch {
	case !running:
		return fmt.Errorf("%s container %s: it is not running: %w", what, m.opts.ID, errdefs.ErrFailedPrecondition)
	case pause && paused:
		return fmt.Errorf("%s container %s: it is already paused: %w", what, m.opts.ID, errdefs.ErrFailedPrecondition)
	case !pause && !paused:
		return fmt.Errorf("%s container %s: it is not paused: %w", what, m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	if _, err := m.runc.call(runcCall{op: op}); err != nil {
		return err
	}
	m.mu.Lock()
	m.paused = pause
	m.mu.Unlock()
	return nil
}

func (m *monitor) delete(force bool) error {
	m.mu.Lock()
	deleted := m.deleted
	running := m.exit == nil && !m.startedAt.IsZero()
	m.mu.Unlock()
	if deleted {
		return nil
	}
	if running && !force {
		return fmt.Errorf("delete container %s: still running: %w", m.opts.ID, errdefs.ErrFailedPrecondition)
	}
	if err := m.destroy(); err != nil {
		return err
	}
	m.mu.Lock()
	m.deleted = true
	m.mu.Unlock()
	if m.log != nil {
		_ = m.log.Close()
	}
	return nil
}

func (m *monitor) attach(conn net.Conn, req wire.Request) {
	a := req.Attach
	if a == nil {
		a = &wire.Attach{Stdout: true, Stderr: true}
	}
	if a.Stdin && m.stdin == nil {
		reply(conn, wire.Response{}, fmt.Errorf("attach stdin of container %s: stdin not kept open: %w", m.opts.ID, errdefs.ErrFailedPrecondition))
		return
	}
	if a.Stdin && m.opts.StdinOnce {
		m.mu.Lock()
		done := m.stdinDone
		// One stdin_once session at a time: the first one's end closes it.
		m.stdinDone = true
		m.mu.Unlock()
		if done {
			reply(conn, wire.Response{}, fmt.Errorf("attach stdin of container %s: stdin was closed when the first attach ended (stdin_once): %w", m.opts.ID, errdefs.ErrFailedPrecondition))
			return
		}
	}
	at := &attacher{fc: &frameConn{conn: conn}, stdout: a.Stdout, stderr: a.Stderr, done: make(chan struct{})}
	// Answered under the fan-out's lock: once the client has the answer
	// (and may start a created container) no output can miss it, and no
	// frame goes out before the answer.
	m.out.add(at, func() { reply(conn, wire.Response{Pid: m.pid}, nil) })
	go func() {
		defer m.out.remove(at)
		if a.Stdin && m.opts.StdinOnce {
			defer m.closeStdin()
		}
		for {
			kind, p, err := wire.ReadFrame(conn)
			if err != nil {
				return
			}
			switch kind {
			case wire.FrameStdin:
				if a.Stdin {
					_, _ = m.stdin.Write(p)
				}
			case wire.FrameCloseStdin:
				if a.Stdin && m.console == nil {
					_ = m.stdin.Close()
				}
			case wire.FrameResize:
				if s, err := wire.ParseResize(p); err == nil && m.console != nil {
					_ = m.console.Resize(console.WinSize{Width: s.Width, Height: s.Height})
				}
			}
		}
	}()
	<-at.done
}

// closeStdin ends the init's stdin for good (stdin_once): the pipe is
// closed, so the process reads EOF; a terminal stays open, as hanging it up
// would signal the process, and only stops getting input.
func (m *monitor) closeStdin() {
	if m.console == nil {
		_ = m.stdin.Close()
	}
}

// exec runs a process in the container and streams its stdio on conn. The
// process is killed if the client goes away before it exits, like
// containerd does when an exec's context ends, so no exec outlives its
// caller unseen.
func (m *monitor) exec(conn net.Conn, req wire.Request) {
	if req.Exec == nil {
		reply(conn, wire.Response{}, fmt.Errorf("exec without process: %w", errdefs.ErrInvalidArgument))
		return
	}
	if s := m.state(); s.Status != wire.StatusRunning {
		reply(conn, wire.Response{}, fmt.Errorf("exec in container %s: container is %s: %w", m.opts.ID, s.Status, errdefs.ErrFailedPrecondition))
		return
	}
	pio, err := newProcIO(ioOptions{terminal: req.Exec.Process.Terminal, stdin: req.Exec.Stdin})
	if err != nil {
		reply(conn, wire.Response{}, err)
		return
	}
	exited := make(chan unix.WaitStatus, 1)
	res, err := m.runc.call(runcCall{op: "exec", args: pio.args, input: &req.Exec.Process, files: pio.childEnds, started: func(pid int) {
		m.reaper.watch(pid, func(ws unix.WaitStatus) { exited <- ws })
	}})
	pio.closeChildEnds()
	if err != nil {
		pio.close()
		reply(conn, wire.Response{}, fmt.Errorf("exec in container %s: %w", m.opts.ID, err))
		return
	}
	pid := res.Pid
	// The process is this shim's child now (berth-runc exited) and is
	// reaped only through exited, so its PID stays valid for kill.
	kill := func() { _ = unix.Kill(pid, unix.SIGKILL) }
	started := time.Now()
	if err := pio.receiveConsole(); err != nil {
		kill()
		reply(conn, wire.Response{}, err)
		return
	}
	defer pio.close()
	reply(conn, wire.Response{Pid: pid}, nil)

	fc := &frameConn{conn: conn}
	var outputs []io.Reader
	kinds := []byte{wire.FrameStdout, wire.FrameStderr}
	if pio.console != nil {
		outputs = []io.Reader{pio.console}
	} else {
		outputs = []io.Reader{pio.stdout, pio.stderr}
	}
	drained := make(chan struct{}, len(outputs))
	for i, r := range outputs {
		go func() {
			defer func() { drained <- struct{}{} }()
			buf := make([]byte, 32*1024)
			for {
				n, err := r.Read(buf)
				if n > 0 {
					// Keep draining after the client left so the process
					// never blocks on a full pipe.
					_ = fc.write(kinds[i], buf[:n])
				}
				if err != nil {
					return
				}
			}
		}()
	}
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		for {
			kind, p, err := wire.ReadFrame(conn)
			if err != nil {
				return
			}
			switch kind {
			case wire.FrameStdin:
				if pio.stdin != nil {
					_, _ = pio.stdin.Write(p)
				}
			case wire.FrameCloseStdin:
				if pio.stdin != nil && pio.console == nil {
					_ = pio.stdin.Close()
				} else if pio.console != nil {
					// EOF on a terminal is ^D.
					_, _ = pio.console.Write([]byte{4})
				}
			case wire.FrameResize:
				if s, err := wire.ParseResize(p); err == nil && pio.console != nil {
					_ = pio.console.Resize(console.WinSize{Width: s.Width, Height: s.Height})
				}
			}
		}
	}()
	var ws unix.WaitStatus
	select {
	case ws = <-exited:
	case <-clientGone:
		kill()
		ws = <-exited
	}
	deadline := time.After(drainTimeout)
	for range outputs {
		select {
		case <-drained:
		case <-deadline:
		}
	}
	code, sig := exitCode(ws)
	_ = fc.writeExit(&wire.Exit{Pid: pid, Code: code, Signal: sig, StartedAt: started, FinishedAt: time.Now()})
}
