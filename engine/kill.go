package engine

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/runtime"
)

// Kill sends a signal (SIGKILL when empty) to the container's init; with
// SIGKILL it waits for the exit. As in dockerd, the container then counts
// as stopped by the user.
func (e *Engine) Kill(ctx context.Context, ref, signal string) error {
	sig := syscall.SIGKILL
	if signal != "" {
		s, err := parseSignal(signal)
		if err != nil {
			return err
		}
		sig = s
	}
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := e.cancelPolicyRestart(c); err != nil {
		return err
	}
	rc, err := e.rt.Container(c.rec.ID)
	if err != nil {
		return fmt.Errorf("kill container %s: %w", c.rec.ID, err)
	}
	if rc.State != runtime.ContainerRunning {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot kill container: %s: container %s is not running", ref, c.rec.ID))
	}
	before := e.markStopping(c)
	if sig != syscall.SIGKILL {
		// The flag stays for the exit this signal may cause; the next
		// start clears it.
		e.mu.Lock()
		c.stopping = false
		e.mu.Unlock()
		if err := e.save(c); err != nil {
			return err
		}
	} else {
		defer e.unmarkStopping(c)
	}
	if err := e.signal(ctx, c, sig); err != nil {
		if errdefs.IsNotFound(err) {
			return nil // exited meanwhile
		}
		return fmt.Errorf("cannot kill container: %s: %w", ref, err)
	}
	if sig == syscall.SIGKILL {
		return e.waitExit(ctx, c, before, 10*time.Second)
	}
	return nil
}
