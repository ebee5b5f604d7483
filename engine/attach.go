package engine

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/term"

	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/runtime"
)

// AttachOptions describe an attach session.
type AttachOptions struct {
	Stdin, Stdout, Stderr bool
	// Stream attaches to the live streams (until the run ends); Logs
	// sends the log first.
	Stream, Logs bool
	// DetachKeys end the session without touching the container
	// ("ctrl-p,ctrl-q" when empty).
	DetachKeys string
	// Streams is called once the request is known to be valid; tty says
	// whether the container's output is one raw stream (a terminal). The
	// HTTP front answers 101 and hijacks the connection there.
	//
	// raw is the session's connection itself, for the log that Logs
	// replays (framed by engine/logs as the streams are).
	Streams func(tty bool) (stdin io.Reader, stdout, stderr, raw io.Writer, err error)
}

// attachment is one attach session waiting for (or connected to) a run.
type attachment struct {
	streams runtime.Streams
	// connect starts the runtime attach; acked is closed once the shim
	// accepted it (or it failed).
	connect func()
	acked   chan struct{}
	// connected is set once connect ran; guarded by Engine.mu.
	connected bool
}

// defaultDetachKeys are Docker's.
const defaultDetachKeys = "ctrl-p,ctrl-q"

// Attach connects a client to the container's stdio. A session that
// starts before the container runs (Docker's CLI attaches, then starts)
// receives the run's output from its first byte; one on a stopped
// container waits for the next start. It returns when the run ends, the
// client detaches, or ctx ends.
func (e *Engine) Attach(ctx context.Context, ref string, o AttachOptions) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	keys, err := term.ToBytes(cmpOr(o.DetachKeys, defaultDetachKeys))
	if err != nil {
		return invalid("Invalid detach keys (%s) provided", o.DetachKeys)
	}
	rc, err := e.rt.Container(c.rec.ID)
	if err != nil {
		return fmt.Errorf("attach to container %s: %w", c.rec.ID, err)
	}
	e.mu.Lock()
	restarting, cfg, id := c.restarting, c.rec.Config, c.rec.ID
	e.mu.Unlock()
	switch {
	case rc.Paused:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is paused, unpause the container before attach", ref))
	case restarting:
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is restarting, wait until the container is running", ref))
	}
	stdin, stdout, stderr, raw, err := o.Streams(cfg.Tty)
	if err != nil {
		return err
	}
	if !o.Stdin || !cfg.OpenStdin {
		stdin = nil
	}
	if !o.Stdout {
		stdout = nil
	}
	if !o.Stderr || cfg.Tty {
		stderr = nil
	}
	if o.Logs {
		e.mu.Lock()
		rec := c.rec.clone()
		e.mu.Unlock()
		ro := logs.ReadOptions{Stdout: stdout != nil, Stderr: stderr != nil, Tail: -1}
		if ro.Stdout || ro.Stderr {
			if err := e.logs.Read(ctx, logContainer(e.containerDir(id), rec), ro, raw); err != nil && !errdefs.IsNotImplemented(err) {
				return err
			}
		}
	}
	e.log(c, events.ActionAttach, nil)
	if !o.Stream {
		return nil
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s := runtime.Streams{Stdout: stdout, Stderr: stderr}
	if stdin != nil {
		s.Stdin = &stdinReader{ctx: ctx, r: stdin, keys: keys, detach: cancel, closeOnEOF: cfg.StdinOnce}
	}
	a := &attachment{acked: make(chan struct{})}
	done := make(chan error, 1)
	var ackOnce bool
	s.Attached = func() {
		if !ackOnce {
			ackOnce = true
			close(a.acked)
		}
	}
	a.streams = s
	a.connect = func() {
		go func() {
			err := e.rt.Attach(ctx, id, a.streams)
			if !ackOnce {
				ackOnce = true
				close(a.acked)
			}
			done <- err
		}()
	}
	e.mu.Lock()
	c.attach = append(c.attach, a)
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		c.attach = slices.DeleteFunc(c.attach, func(x *attachment) bool { return x == a })
		e.mu.Unlock()
	}()
	if rc.State == runtime.ContainerRunning || rc.State == runtime.ContainerCreated {
		e.mu.Lock()
		a.connected = true
		e.mu.Unlock()
		a.connect()
	}
	for {
		e.mu.Lock()
		connected, removed, ch := a.connected, c.removed, c.changed
		e.mu.Unlock()
		if removed && !connected {
			return nil
		}
		if connected {
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
	select {
	case err := <-done:
		if err != nil && ctx.Err() == nil && !errdefs.IsFailedPrecondition(err) {
			return err
		}
	case <-ctx.Done():
		<-done
	}
	if r, ok := s.Stdin.(*stdinReader); ok && r.detached {
		e.log(c, events.ActionDetach, nil)
	}
	return nil
}

// connectAttachers connects the sessions waiting for this run and waits
// (briefly) until the shim accepted every session of the container, so
// that the start that follows loses no output. Called with c.op held,
// after the run's shim exists.
func (e *Engine) connectAttachers(ctx context.Context, c *ctr) {
	e.mu.Lock()
	all := slices.Clone(c.attach)
	var todo []*attachment
	for _, a := range all {
		if !a.connected {
			a.connected = true
			todo = append(todo, a)
		}
	}
	c.notify()
	e.mu.Unlock()
	for _, a := range todo {
		a.connect()
	}
	deadline := time.After(5 * time.Second)
	for _, a := range all {
		select {
		case <-a.acked:
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// stdinReader feeds a session's input to the container: it ends the
// session on the detach keys and, unless the container closes its stdin
// with the first session (StdinOnce), keeps the container's stdin open
// when the client's input ends.
type stdinReader struct {
	ctx     context.Context
	r       io.Reader
	keys    []byte
	matched int
	detach  func()
	// detached is set once the keys were typed.
	detached   bool
	closeOnEOF bool
}

func (s *stdinReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	for i := 0; i < n && len(s.keys) > 0; i++ {
		if p[i] == s.keys[s.matched] {
			s.matched++
			if s.matched == len(s.keys) {
				s.detached = true
				s.detach()
				<-s.ctx.Done()
				return 0, s.ctx.Err()
			}
			continue
		}
		s.matched = 0
		if p[i] == s.keys[0] {
			s.matched = 1
		}
	}
	if err == io.EOF && !s.closeOnEOF {
		// The client sent all it had; the container's stdin stays open
		// for later sessions.
		<-s.ctx.Done()
		return n, s.ctx.Err()
	}
	return n, err
}
