package engine

import (
	"context"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// ErrAlreadyStopped is Stop's answer for a container that does not run
// (Docker's 304).
var ErrAlreadyStopped = fmt.Errorf("container already stopped: %w", errdefs.ErrAlreadyExists)

// StopOptions tune Stop and Restart.
type StopOptions struct {
	// Signal overrides the container's stop signal.
	Signal string
	// Timeout is the grace period in seconds before SIGKILL; nil means
	// the container's StopTimeout, else the engine's; -1 waits forever.
	Timeout *int
}

// Stop sends the stop signal, waits for the grace period, then kills. The
// container counts as stopped by the user: no restart policy brings it
// back (unless-stopped not even after a daemon restart).
func (e *Engine) Stop(ctx context.Context, ref string, o StopOptions) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	wasRestarting := c.restarting
	if err := e.cancelPolicyRestart(c); err != nil {
		return err
	}
	rc, err := e.rt.Container(c.rec.ID)
	if err != nil {
		return fmt.Errorf("stop container %s: %w", c.rec.ID, err)
	}
	if rc.State != runtime.ContainerRunning {
		if wasRestarting {
			// Its policy restart is cancelled: that was the stop.
			_ = e.update(c, func(r *record) { r.StoppedByUser = true })
			return nil
		}
		return ErrAlreadyStopped
	}
	return e.stop(ctx, c, o)
}

// stop is Stop with c.op held, for a running container.
func (e *Engine) stop(ctx context.Context, c *ctr, o StopOptions) error {
	e.mu.Lock()
	id, cfg := c.rec.ID, c.rec.Config
	e.mu.Unlock()
	sigName := cmpOr(o.Signal, cmpOr(cfg.StopSignal, "SIGTERM"))
	sig, err := parseSignal(sigName)
	if err != nil {
		return err
	}
	timeout := e.cfg.StopTimeout
	switch {
	case o.Timeout != nil:
		timeout = time.Duration(*o.Timeout) * time.Second
	case cfg.StopTimeout != nil:
		timeout = time.Duration(*cfg.StopTimeout) * time.Second
	}
	st := steps.Start(ctx, "docker stop")
	defer st.Log("id", id)
	before := e.markStopping(c)
	defer e.unmarkStopping(c)
	if err := e.signal(ctx, c, sig); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("stop container %s: %w", id, err)
	}
	st.Done("signal")
	// The exit's handling (the network's detach) goes on after the wait.
	defer st.Done("exit")
	switch {
	case timeout < 0:
		// Wait forever, as Docker's -t -1.
		if err := e.waitExit(ctx, c, before, 0); err != nil {
			return err
		}
	case timeout == 0:
		if err := e.signal(ctx, c, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		if err := e.waitExit(ctx, c, before, 0); err != nil {
			return err
		}
	default:
		err := e.waitExit(ctx, c, before, timeout)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return err
		}
		if err := e.signal(ctx, c, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("stop container %s: %w", id, err)
		}
		if err := e.waitExit(ctx, c, before, 0); err != nil {
			return err
		}
	}
	e.log(c, events.ActionStop, nil)
	return nil
}

// markStopping flags the run as ended by the user (no policy restart) and
// returns the exits handled so far, for waitExit.
func (e *Engine) markStopping(c *ctr) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.stopping = true
	c.rec.StoppedByUser = true
	return c.exits
}

func (e *Engine) unmarkStopping(c *ctr) {
	e.mu.Lock()
	defer e.mu.Unlock()
	c.stopping = false
}

// signal sends sig to the container's init and thaws a paused container,
// which could not act on it otherwise, as dockerd does. A kill event says
// which signal.
func (e *Engine) signal(ctx context.Context, c *ctr, sig syscall.Signal) error {
	e.mu.Lock()
	id := c.rec.ID
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return err
	}
	if err := e.rt.SignalContainer(ctx, id, sig); err != nil {
		return err
	}
	if rc.Paused && sig != syscall.SIGKILL {
		if err := e.rt.ResumeContainer(ctx, id); err == nil {
			e.log(c, events.ActionUnPause, nil)
		}
	}
	e.log(c, events.ActionKill, map[string]string{"signal": strconv.Itoa(int(sig))})
	return nil
}

// waitExit waits until the engine handled an exit after the first
// `before` ones, for up to d (0: until ctx ends). A timeout returns an
// error wrapping context.DeadlineExceeded.
func (e *Engine) waitExit(ctx context.Context, c *ctr, before int, d time.Duration) error {
	var timeout <-chan time.Time
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		timeout = t.C
	}
	for {
		e.mu.Lock()
		done, ch := c.exits > before || c.removed, c.changed
		e.mu.Unlock()
		if done {
			return nil
		}
		// The exit may be recorded by the runtime before the engine's
		// watcher handled it; handle it here then. Handled already, it
		// may be one the caller counted in before (it came between the
		// caller's look at the state and its count): the container is
		// not running either way.
		if rc, err := e.rt.Container(c.rec.ID); err == nil && rc.State == runtime.ContainerExited {
			e.handleExit(e.bgCtx, c, *rc, exitOptions{})
			e.mu.Lock()
			handled := !rc.FinishedAt.After(c.rec.HandledExit)
			e.mu.Unlock()
			if handled {
				return nil
			}
		}
		select {
		case <-ch:
		case <-timeout:
			return fmt.Errorf("container %s did not exit within %s: %w", c.rec.ID, d, context.DeadlineExceeded)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
