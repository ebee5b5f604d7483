// Package shim is berthd's side of berth-shim, the per-container monitor:
// Start launches a shim for one container, Connect finds a running one
// again after a berthd restart, and the Client methods speak the
// runtime/shim/wire protocol over the shim's unix socket. ReadExit reads
// the exit status the shim recorded, which outlives both processes.
//
// The package is pure Go, and so is berth-shim: libcontainer lives only in
// berth-runc, the short-lived helper the shim runs (from its own directory)
// for create, start, exec, update and delete. The shim reads cgroup
// statistics itself (runtime/shim/cgstat).
package shim

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// StartOptions describe one container's shim.
type StartOptions struct {
	// Binary is the berth-shim executable; berth-runc must be next to it.
	Binary string
	ID     string
	// Bundle holds config.json; a relative root.path is resolved in it.
	Bundle string
	// StateDir is the shim's directory (socket, exit file, shim log,
	// libcontainer state). Keep it short: a unix socket path is limited
	// to 107 bytes.
	StateDir string
	// LogPath is the container's log file; empty discards the output.
	LogPath string
	// Log is the file's format and rotation; the zero value is the
	// kubelet's CRI format, not rotated.
	Log wire.Log
	// Stdin keeps the container's stdin open for Attach.
	Stdin bool
	// StdinOnce closes it when the first attach that streams stdin ends.
	StdinOnce bool
	// CreateOnly leaves the process created but not started until
	// Client.Start, as CRI CreateContainer does.
	CreateOnly bool
	// SeccompCache is a directory, shared by the shims of all containers,
	// that keeps compiled seccomp filters (berth-runc --seccomp-cache);
	// empty compiles each container's profile anew.
	SeccompCache string
}

// Client talks to one shim. It holds no connection: every call dials, so a
// Client is safe for concurrent use and survives nothing that matters.
type Client struct {
	stateDir string
	pid      int
	shimPid  int
}

// Start launches a new shim, which creates the container (and starts it
// unless CreateOnly), and returns once the shim's socket serves. The shim
// runs in its own session and keeps running when berthd exits. A
// Launcher does the same with a shim started ahead of need.
func Start(ctx context.Context, o StartOptions) (*Client, error) {
	if err := o.prepare(); err != nil {
		return nil, err
	}
	p, err := spawn(o.Binary)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", o.ID, err)
	}
	if err := p.give(o); err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", o.ID, err)
	}
	return p.await(ctx, o)
}

// prepare checks o and makes the state directory.
func (o *StartOptions) prepare() error {
	if o.Binary == "" || o.ID == "" || o.Bundle == "" || o.StateDir == "" {
		return fmt.Errorf("start shim: binary, id, bundle and state dir are required: %w", errdefs.ErrInvalidArgument)
	}
	if len(filepath.Join(o.StateDir, wire.SocketName)) > 107 {
		return fmt.Errorf("start shim for %s: state dir %s too long for a unix socket: %w", o.ID, o.StateDir, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(o.StateDir, 0o711); err != nil {
		return fmt.Errorf("start shim for %s: %w", o.ID, err)
	}
	return nil
}

// proc is a started berth-shim: the pipe it reads its job from and the
// one it reports readiness on.
type proc struct {
	cmd   *exec.Cmd
	job   *os.File
	ready *os.File
	// exited is closed once the process is reaped.
	exited chan struct{}
}

// spawn starts "berth-shim run --standby" in its own session: it reads
// its container as a wire.Job on fd 4 (output discarded until it opens the
// job's shim log) and reports on fd 3. Closing the job pipe without a job
// makes it exit.
func spawn(binary string) (*proc, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	jr, jw, err := os.Pipe()
	if err != nil {
		r.Close()
		return nil, err
	}
	defer jr.Close()
	p := &proc{job: jw, ready: r, exited: make(chan struct{})}
	cmd := exec.Command(binary, "run", "--standby")
	cmd.ExtraFiles = []*os.File{w, jr}
	cmd.Dir = "/"
	// Its own session: no signal aimed at berthd's process group or
	// terminal reaches the shim.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		p.close()
		return nil, err
	}
	p.cmd = cmd
	// Reap the shim if it exits while berthd lives; after a berthd restart
	// it is re-parented and someone else reaps it.
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// give hands the shim its container. It fails when the shim is gone (a
// spare killed on standby).
//
// The shim's PID goes into the state directory's pid file first: a berthd
// that dies once the job is out leaves a shim that goes on creating the
// container for nobody, and the next Open finds it by that file
// (KillStray) even when the shim was too slow to write the file itself
// before that Open looked.
func (p *proc) give(o StartOptions) error {
	if err := os.WriteFile(filepath.Join(o.StateDir, wire.PidName), []byte(strconv.Itoa(p.cmd.Process.Pid)), 0o644); err != nil {
		p.close()
		return fmt.Errorf("hand the shim its container: %w", err)
	}
	job, _ := json.Marshal(wire.Job{ID: o.ID, Bundle: o.Bundle, StateDir: o.StateDir, LogPath: o.LogPath, Log: o.Log, Stdin: o.Stdin, StdinOnce: o.StdinOnce, CreateOnly: o.CreateOnly, SeccompCache: o.SeccompCache})
	_, err := p.job.Write(append(job, '\n'))
	p.job.Close()
	if err != nil {
		p.close()
		return fmt.Errorf("hand the shim its container: %w", err)
	}
	return nil
}

// close drops berthd's ends of the pipes; a shim without a job then exits.
func (p *proc) close() {
	p.ready.Close()
	p.job.Close()
}

// await reads the shim's ready line and returns its Client.
func (p *proc) await(ctx context.Context, o StartOptions) (*Client, error) {
	type result struct {
		ready wire.Ready
		err   error
	}
	ch := make(chan result, 1)
	// The reader owns the pipe: after a cancellation it still needs the
	// answer.
	go func() {
		defer p.close()
		line, err := bufio.NewReader(p.ready).ReadBytes('\n')
		if err != nil {
			ch <- result{err: err}
			return
		}
		var rd wire.Ready
		err = json.Unmarshal(line, &rd)
		ch <- result{ready: rd, err: err}
	}()
	var res result
	select {
	case res = <-ch:
	case <-ctx.Done():
		// Killing the shim mid-creation would strand a half-made container
		// and its cgroups. Let it finish, then undo it through the shim on
		// a context the caller's cancellation cannot abort.
		go func() {
			res := <-ch
			if res.err != nil || res.ready.Error != "" {
				return
			}
			c := &Client{stateDir: o.StateDir}
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			if c.Delete(cctx, DeleteOptions{Force: true}) == nil {
				_ = c.Shutdown(cctx)
			}
		}()
		return nil, fmt.Errorf("start shim for %s: %w", o.ID, ctx.Err())
	}
	if res.err != nil {
		return nil, fmt.Errorf("start shim for %s: shim exited before it was ready: %w: %s", o.ID, errdefs.ErrUnavailable, tail(filepath.Join(o.StateDir, wire.LogName)))
	}
	if res.ready.Error != "" {
		return nil, fmt.Errorf("start shim for %s: %w", o.ID, wire.Error(res.ready.Error, res.ready.Class))
	}
	return &Client{stateDir: o.StateDir, pid: res.ready.Pid, shimPid: p.cmd.Process.Pid}, nil
}

// tail returns the last line of the shim's log, where it reports errors
// it could not send.
func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// Connect returns a Client for the shim serving in stateDir, for a berthd
// that restarted. It fails with errdefs.ErrUnavailable when no shim
// answers there; ReadExit then tells how the container ended.
func Connect(ctx context.Context, stateDir string) (*Client, error) {
	c := &Client{stateDir: stateDir}
	s, err := c.State(ctx)
	if err != nil {
		return nil, err
	}
	c.pid, c.shimPid = s.Pid, s.ShimPid
	return c, nil
}

// ReadExit reads the exit status recorded in stateDir. errdefs.ErrNotFound
// means the container has not exited (or never started).
func ReadExit(stateDir string) (wire.Exit, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, wire.ExitName))
	if errors.Is(err, os.ErrNotExist) {
		return wire.Exit{}, fmt.Errorf("read exit status in %s: %w", stateDir, errdefs.ErrNotFound)
	}
	if err != nil {
		return wire.Exit{}, fmt.Errorf("read exit status in %s: %w", stateDir, err)
	}
	var e wire.Exit
	if err := json.Unmarshal(b, &e); err != nil {
		return wire.Exit{}, fmt.Errorf("decode exit status in %s: %w: %w", stateDir, errdefs.ErrDataLoss, err)
	}
	return e, nil
}

// Pid is the container init's host PID.
func (c *Client) Pid() int { return c.pid }

// ShimPid is the shim's PID.
func (c *Client) ShimPid() int { return c.shimPid }

// StateDir is the shim's state directory.
func (c *Client) StateDir() string { return c.stateDir }

// dial opens a connection whose life is bound to ctx, and sends req.
func (c *Client) dial(ctx context.Context, req wire.Request) (net.Conn, *bufio.Reader, func() bool, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", filepath.Join(c.stateDir, wire.SocketName))
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, nil, fmt.Errorf("reach shim in %s: %w: %w", c.stateDir, errdefs.ErrUnavailable, err)
		}
		return nil, nil, nil, fmt.Errorf("reach shim in %s: %w", c.stateDir, err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	b, _ := json.Marshal(req)
	if _, err := conn.Write(append(b, '\n')); err != nil {
		stop()
		conn.Close()
		return nil, nil, nil, c.connErr(ctx, req.Op, err)
	}
	return conn, bufio.NewReader(conn), stop, nil
}

func (c *Client) connErr(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("shim %s in %s: %w", op, c.stateDir, ctx.Err())
	}
	return fmt.Errorf("shim %s in %s: %w: %w", op, c.stateDir, errdefs.ErrUnavailable, err)
}

func (c *Client) readResponse(ctx context.Context, op string, br *bufio.Reader) (wire.Response, error) {
	line, err := br.ReadBytes('\n')
	if err != nil {
		return wire.Response{}, c.connErr(ctx, op, err)
	}
	var resp wire.Response
	if err := json.Unmarshal(line, &resp); err != nil {
		return wire.Response{}, fmt.Errorf("shim %s: decode response: %w", op, err)
	}
	if resp.Error != "" {
		return resp, wire.Error(resp.Error, resp.Class)
	}
	return resp, nil
}

func (c *Client) call(ctx context.Context, req wire.Request) (wire.Response, error) {
	conn, br, stop, err := c.dial(ctx, req)
	if err != nil {
		return wire.Response{}, err
	}
	defer stop()
	defer conn.Close()
	return c.readResponse(ctx, req.Op, br)
}

// State returns the shim's view of the container.
func (c *Client) State(ctx context.Context) (wire.State, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpState})
	if err != nil {
		return wire.State{}, err
	}
	if resp.State == nil {
		return wire.State{}, fmt.Errorf("shim state: empty answer: %w", errdefs.ErrUnknown)
	}
	return *resp.State, nil
}

// Start runs the process of a container created with CreateOnly and
// returns the container's state after it.
func (c *Client) Start(ctx context.Context) (wire.State, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpStart})
	if err != nil {
		return wire.State{}, err
	}
	if resp.State == nil {
		return c.State(ctx)
	}
	return *resp.State, nil
}

// Signal sends sig to the container's init. SIGKILL of a container without
// its own PID namespace kills all its processes. A container that already
// exited gives errdefs.ErrNotFound.
func (c *Client) Signal(ctx context.Context, sig syscall.Signal) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpSignal, Signal: int(sig)})
	return err
}

// Wait blocks until the container's init exits, or ctx ends.
func (c *Client) Wait(ctx context.Context) (wire.Exit, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpWait})
	if err != nil {
		return wire.Exit{}, err
	}
	if resp.Exit == nil {
		return wire.Exit{}, fmt.Errorf("shim wait: no exit in answer: %w", errdefs.ErrUnknown)
	}
	return *resp.Exit, nil
}

// Resize sets the size of the container's terminal.
func (c *Client) Resize(ctx context.Context, s wire.Size) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpResize, Size: &s})
	return err
}

// Stats reads the container's cgroup statistics.
func (c *Client) Stats(ctx context.Context) (wire.Stats, error) {
	resp, err := c.call(ctx, wire.Request{Op: wire.OpStats})
	if err != nil {
		return wire.Stats{}, err
	}
	if resp.Stats == nil {
		return wire.Stats{}, fmt.Errorf("shim stats: empty answer: %w", errdefs.ErrUnknown)
	}
	return *resp.Stats, nil
}

// Update changes the container's cgroup limits; fields left nil stay.
func (c *Client) Update(ctx context.Context, r *specs.LinuxResources) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpUpdate, Resources: r})
	return err
}

// Pause freezes the container's processes.
func (c *Client) Pause(ctx context.Context) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpPause})
	return err
}

// Resume thaws a paused container.
func (c *Client) Resume(ctx context.Context) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpResume})
	return err
}

// ReopenLog makes the shim reopen the log file (after the kubelet rotated
// it).
func (c *Client) ReopenLog(ctx context.Context) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpReopenLog})
	return err
}

// DeleteOptions tune Delete.
type DeleteOptions struct {
	// Force kills a running container first instead of refusing.
	Force bool
}

// Delete destroys the container: its processes (with Force), its
// libcontainer state and the cgroup directories its creation made. The
// shim keeps serving (State, exit) until Shutdown.
func (c *Client) Delete(ctx context.Context, o DeleteOptions) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpDelete, Force: o.Force})
	return err
}

// Shutdown makes the shim exit. It refuses while the container runs. The
// state directory, with the exit file, stays for berthd to remove.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.call(ctx, wire.Request{Op: wire.OpShutdown})
	return err
}

// Streams are the client ends of a process's stdio. Nil members are not
// transferred.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Resize carries terminal size changes until it is closed.
	Resize <-chan wire.Size
	// Attached, when set, is called once the shim accepted the stream:
	// from then on no output of the process is missed.
	Attached func()
}

// ExecOptions describe a process to run in the container.
type ExecOptions struct {
	Process specs.Process
	Streams
	// Started, when set, is called with the process's PID once the shim
	// has started it.
	Started func(pid int)
}

// Exec runs a process in the running container and streams its stdio
// until it exits. If ctx ends first the shim kills the process.
func (c *Client) Exec(ctx context.Context, o ExecOptions) (wire.Exit, error) {
	req := wire.Request{Op: wire.OpExec, Exec: &wire.Exec{Process: o.Process, Stdin: o.Stdin != nil}}
	return c.stream(ctx, req, o.Streams, o.Started)
}

// Attach streams the container's stdio until the container exits (the
// returned Exit) or ctx ends.
func (c *Client) Attach(ctx context.Context, s Streams) (wire.Exit, error) {
	req := wire.Request{Op: wire.OpAttach, Attach: &wire.Attach{Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil}}
	var started func(int)
	if s.Attached != nil {
		started = func(int) { s.Attached() }
	}
	return c.stream(ctx, req, s, started)
}

func (c *Client) stream(ctx context.Context, req wire.Request, s Streams, started func(pid int)) (wire.Exit, error) {
	conn, br, stop, err := c.dial(ctx, req)
	if err != nil {
		return wire.Exit{}, err
	}
	defer stop()
	defer conn.Close()
	resp, err := c.readResponse(ctx, req.Op, br)
	if err != nil {
		return wire.Exit{}, err
	}
	if started != nil {
		started(resp.Pid)
	}
	fw := &frameWriter{w: conn}
	if s.Stdin != nil {
		go func() {
			buf := make([]byte, 32*1024)
			for {
				n, err := s.Stdin.Read(buf)
				if n > 0 {
					if fw.write(wire.FrameStdin, buf[:n]) != nil {
						return
					}
				}
				if err != nil {
					_ = fw.write(wire.FrameCloseStdin, nil)
					return
				}
			}
		}()
	}
	if s.Resize != nil {
		go func() {
			for {
				select {
				case size, ok := <-s.Resize:
					if !ok || fw.write(wire.FrameResize, wire.ResizePayload(size)) != nil {
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	for {
		kind, p, err := wire.ReadFrame(br)
		if err != nil {
			return wire.Exit{}, c.connErr(ctx, req.Op, err)
		}
		switch kind {
		case wire.FrameStdout:
			if s.Stdout != nil {
				_, _ = s.Stdout.Write(p)
			}
		case wire.FrameStderr:
			if s.Stderr != nil {
				_, _ = s.Stderr.Write(p)
			}
		case wire.FrameExit:
			var e wire.Exit
			if err := json.Unmarshal(p, &e); err != nil {
				return wire.Exit{}, fmt.Errorf("shim %s: decode exit: %w", req.Op, err)
			}
			return e, nil
		}
	}
}

type frameWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (f *frameWriter) write(kind byte, p []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return wire.WriteFrame(f.w, kind, p)
}
