package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/term"

	"github.com/berth-dev/berth/runtime"
)

// An exec instance is Docker's: created by ExecCreate, run once by
// ExecStart, inspectable until its container stops (finished instances
// are dropped after execKeep, as dockerd does). Its process belongs to
// the exec, not to the client: a client that detaches or goes away
// leaves it running (its output is dropped from then on); it ends with
// its container. Exec processes are the shim's children over berthd's
// connection, so a restart of berthd ends the ones still running.

// execKeep is how long a finished exec stays inspectable.
const execKeep = 5 * time.Minute

// execSession is one exec instance.
type execSession struct {
	id, containerID string
	cfg             container.ExecCreateRequest
	created         time.Time

	// Guarded by Engine.mu.
	started  bool
	running  bool
	pid      int
	exitCode *int
	ended    time.Time
	// resize carries the client's terminal sizes to the process.
	resize chan runtime.Size
}

// execs is the engine's table of exec instances.
type execs struct {
	byID map[string]*execSession
}

// ExecCreate registers an exec instance in a running container and
// returns its ID.
func (e *Engine) ExecCreate(ctx context.Context, ref string, cfg container.ExecCreateRequest) (string, error) {
	if len(cfg.Cmd) == 0 {
		return "", invalid("No exec command specified")
	}
	if cfg.DetachKeys != "" {
		if _, err := term.ToBytes(cfg.DetachKeys); err != nil {
			return "", invalid("Invalid escape keys (%s) provided", cfg.DetachKeys)
		}
	}
	c, err := e.lookup(ref)
	if err != nil {
		return "", err
	}
	if err := e.execAllowed(c); err != nil {
		return "", err
	}
	x := &execSession{id: newID(), containerID: c.rec.ID, cfg: cfg, created: time.Now(), resize: make(chan runtime.Size, 1)}
	e.mu.Lock()
	e.pruneExecsLocked()
	if e.execs.byID == nil {
		e.execs.byID = map[string]*execSession{}
	}
	e.execs.byID[x.id] = x
	e.mu.Unlock()
	e.log(c, events.Action(string(events.ActionExecCreate)+": "+strings.Join(cfg.Cmd, " ")), map[string]string{"execID": x.id})
	return x.id, nil
}

// execAllowed refuses an exec in a container that is not running, paused
// or restarting, with dockerd's messages.
func (e *Engine) execAllowed(c *ctr) error {
	e.mu.Lock()
	id, restarting := c.rec.ID, c.restarting
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", id, err)
	}
	switch {
	case restarting:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Container %s is restarting, wait until the container is running", id))
	case rc.State != runtime.ContainerRunning:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", id))
	case rc.Paused:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Container %s is paused, unpause the container before exec", id))
	}
	return nil
}

// pruneExecsLocked drops finished instances past execKeep and those of
// containers that are gone.
func (e *Engine) pruneExecsLocked() {
	for id, x := range e.execs.byID {
		c := e.containers[x.containerID]
		if c == nil || c.removed || (x.exitCode != nil && time.Since(x.ended) > execKeep) {
			delete(e.execs.byID, id)
		}
	}
}

func (e *Engine) execSession(id string) (*execSession, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x := e.execs.byID[id]; x != nil {
		return x, nil
	}
	return nil, errdefs.ErrNotFound.WithMessage("No such exec instance: " + id)
}

// ExecStartOptions describe how an exec instance runs.
type ExecStartOptions struct {
	// Detach runs the process in the background with no streams.
	Detach bool
	// ConsoleSize is the initial terminal size (height, width).
	ConsoleSize *[2]uint
	// Streams is called once the instance is known to start; tty says
	// whether the output is one raw stream. The HTTP front hijacks the
	// connection there. Not called with Detach.
	Streams func(tty bool) (stdin io.Reader, stdout, stderr io.Writer, err error)
}

// ExecStart runs an exec instance. Attached, it returns once the process
// ended (its exit code is then in ExecInspect), the client detached or ctx
// ended; detached, once the process started.
func (e *Engine) ExecStart(ctx context.Context, id string, o ExecStartOptions) error {
	x, err := e.execSession(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	c := e.containers[x.containerID]
	switch {
	case x.exitCode != nil:
		e.mu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Error: Exec command %s has already run", id))
	case x.started:
		e.mu.Unlock()
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Error: Exec command %s is already running", id))
	case c == nil || c.removed:
		e.mu.Unlock()
		return noSuchContainer(x.containerID)
	}
	x.started = true
	e.mu.Unlock()
	if err := e.execAllowed(c); err != nil {
		e.execFailed(x, -1)
		return err
	}
	keys, err := term.ToBytes(cmpOr(x.cfg.DetachKeys, defaultDetachKeys))
	if err != nil {
		e.execFailed(x, -1)
		return invalid("Invalid escape keys (%s) provided", x.cfg.DetachKeys)
	}

	// The process's own context: the client's going away does not end it.
	pctx, cancel := context.WithCancel(e.bgCtx)
	client := &execClient{done: make(chan struct{})}
	if !o.Detach {
		stdin, stdout, stderr, err := o.Streams(x.cfg.Tty)
		if err != nil {
			cancel()
			e.execFailed(x, -1)
			return err
		}
		if x.cfg.AttachStdout {
			client.stdout = stdout
		}
		if x.cfg.AttachStderr && !x.cfg.Tty {
			client.stderr = stderr
		}
		if x.cfg.AttachStdin && stdin != nil {
			client.stdin = &execStdin{r: stdin, keys: keys, client: client, proc: pctx}
		}
	}
	if o.ConsoleSize != nil && x.cfg.Tty {
		x.resize <- runtime.Size{Height: uint16(o.ConsoleSize[0]), Width: uint16(o.ConsoleSize[1])}
	}
	opts, err := e.execOptions(c, x)
	if err != nil {
		cancel()
		e.execFailed(x, -1)
		return err
	}
	opts.Streams = runtime.Streams{Resize: x.resize}
	if client.stdout != nil {
		opts.Stdout = client.writer(client.stdout)
	}
	if client.stderr != nil {
		opts.Stderr = client.writer(client.stderr)
	}
	if client.stdin != nil {
		opts.Stdin = client.stdin
	}
	started := make(chan struct{})
	opts.Started = func(pid int) {
		e.mu.Lock()
		x.pid, x.running = pid, true
		e.mu.Unlock()
		close(started)
	}
	cmd := strings.Join(x.cfg.Cmd, " ")
	e.log(c, events.Action(string(events.ActionExecStart)+": "+cmd), map[string]string{"execID": x.id})
	finished := make(chan error, 1)
	go func() {
		defer cancel()
		code, err := e.rt.Exec(pctx, x.containerID, opts)
		if err != nil {
			code = 126
			if errdefs.IsNotFound(err) || strings.Contains(err.Error(), "no such file") || strings.Contains(err.Error(), "executable file not found") {
				code = 127
			}
		}
		e.mu.Lock()
		x.running = false
		x.exitCode = &code
		x.ended = time.Now()
		e.mu.Unlock()
		e.log(c, events.ActionExecDie, map[string]string{"execID": x.id, "exitCode": strconv.Itoa(code)})
		finished <- err
	}()
	if o.Detach {
		select {
		case <-started:
			return nil
		case err := <-finished:
			return execError(x, err)
		}
	}
	select {
	case err := <-finished:
		client.leave()
		return execError(x, err)
	case <-client.done:
		return nil
	case <-ctx.Done():
		client.leave()
		return nil
	}
}

// execError words a failed start as dockerd does (the CLI prints it):
// the runtime's own reason, without the layers that only repeat the IDs.
func execError(x *execSession, err error) error {
	if err == nil {
		return nil
	}
	msg := execLayers.ReplaceAllString(err.Error(), "")
	return fmt.Errorf("OCI runtime exec failed: %s: %w", msg, err)
}

// execLayers are the wrappers the runtime and the shim put around an exec
// failure, each naming the container again.
var execLayers = regexp.MustCompile(`exec in container [0-9a-f]+: `)

// execFailed records an instance that never ran.
func (e *Engine) execFailed(x *execSession, code int) {
	e.mu.Lock()
	x.exitCode, x.ended = &code, time.Now()
	e.mu.Unlock()
}

// execOptions are the runtime's options of an instance: the container's
// process with the instance's user, environment (TERM=xterm on a
// terminal unless the container sets TERM, as dockerd), working
// directory and, privileged, every capability.
func (e *Engine) execOptions(c *ctr, x *execSession) (runtime.ExecOptions, error) {
	e.mu.Lock()
	cenv := slices.Clone(c.rec.Config.Env)
	e.mu.Unlock()
	o := runtime.ExecOptions{Cmd: x.cfg.Cmd, TTY: x.cfg.Tty, User: x.cfg.User, WorkDir: x.cfg.WorkingDir}
	if x.cfg.Tty && !slices.ContainsFunc(cenv, func(kv string) bool { return strings.HasPrefix(kv, "TERM=") }) {
		o.Env = append(o.Env, "TERM=xterm")
	}
	for _, kv := range x.cfg.Env {
		if strings.HasPrefix(kv, "=") || kv == "" {
			return runtime.ExecOptions{}, invalid("invalid environment variable: %s", kv)
		}
	}
	o.Env = append(o.Env, x.cfg.Env...)
	if x.cfg.Privileged {
		o.Capabilities = e.allCaps()
	}
	return o, nil
}

// ExecResize changes a running instance's terminal size.
func (e *Engine) ExecResize(ctx context.Context, id string, height, width uint16) error {
	x, err := e.execSession(id)
	if err != nil {
		return err
	}
	e.mu.Lock()
	running, tty := x.running || (x.started && x.exitCode == nil), x.cfg.Tty
	e.mu.Unlock()
	if !running {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Exec %s is not running, so it can not be resized.", id))
	}
	if !tty {
		return nil
	}
	// Only the latest size matters: replace one still queued.
	for {
		select {
		case x.resize <- runtime.Size{Height: height, Width: width}:
			return nil
		default:
			select {
			case <-x.resize:
			default:
			}
		}
	}
}

// ExecInspect describes an instance.
func (e *Engine) ExecInspect(ctx context.Context, id string) (container.ExecInspectResponse, error) {
	x, err := e.execSession(id)
	if err != nil {
		return container.ExecInspectResponse{}, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	priv := x.cfg.Privileged
	r := container.ExecInspectResponse{
		ID: x.id, Running: x.running, Pid: x.pid, ContainerID: x.containerID,
		OpenStdin: x.cfg.AttachStdin, OpenStdout: x.cfg.AttachStdout, OpenStderr: x.cfg.AttachStderr,
		CanRemove: x.exitCode != nil, DetachKeys: []byte(x.cfg.DetachKeys),
		ProcessConfig: &container.ExecProcessConfig{
			Tty: x.cfg.Tty, Entrypoint: x.cfg.Cmd[0], Arguments: slices.Clone(x.cfg.Cmd[1:]),
			Privileged: &priv, User: x.cfg.User,
		},
	}
	if !x.running {
		r.Pid = 0
	}
	if x.exitCode != nil {
		code := *x.exitCode
		r.ExitCode = &code
	}
	return r, nil
}

// execIDs are the instances of a container that did not finish, for
// inspect's ExecIDs.
func (e *Engine) execIDs(id string) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, x := range e.execs.byID {
		if x.containerID == id && x.exitCode == nil {
			out = append(out, x.id)
		}
	}
	slices.Sort(out)
	return out
}

// execClient is the attached client of an instance: its streams until it
// leaves (detach keys, connection gone), after which output is dropped.
type execClient struct {
	mu             sync.Mutex
	gone           bool
	done           chan struct{}
	stdout, stderr io.Writer
	stdin          *execStdin
}

func (c *execClient) leave() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.gone {
		c.gone = true
		close(c.done)
	}
}

// writer drops writes once the client left, and a write error makes it
// leave: the process must never block on a client that is gone.
func (c *execClient) writer(w io.Writer) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		c.mu.Lock()
		gone := c.gone
		c.mu.Unlock()
		if gone {
			return len(p), nil
		}
		if _, err := w.Write(p); err != nil {
			c.leave()
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// execStdin feeds the client's input to the process. The detach keys
// make the client leave with the process's stdin left open (it keeps
// running, as dockerd's); the end of the client's input closes it.
type execStdin struct {
	r       io.Reader
	keys    []byte
	matched int
	client  *execClient
	proc    context.Context
}

func (s *execStdin) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	for i := 0; i < n && len(s.keys) > 0; i++ {
		if p[i] == s.keys[s.matched] {
			s.matched++
			if s.matched == len(s.keys) {
				s.client.leave()
				<-s.proc.Done()
				return 0, io.EOF
			}
			continue
		}
		s.matched = 0
		if p[i] == s.keys[0] {
			s.matched = 1
		}
	}
	if err != nil && !errors.Is(err, io.EOF) {
		err = io.EOF
	}
	return n, err
}
