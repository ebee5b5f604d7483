package engine

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/runtime"
)

// Pause freezes the container's processes.
func (e *Engine) Pause(ctx context.Context, ref string) error {
	c, rc, err := e.running(ref)
	if err != nil {
		return err
	}
	if rc.Paused {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is already paused", c.rec.ID))
	}
	// As dockerd: no healthchecks while paused.
	e.stopHealth(c)
	if err := e.rt.PauseContainer(ctx, c.rec.ID); err != nil {
		e.resumeHealth(c)
		return fmt.Errorf("cannot pause container %s: %w", ref, err)
	}
	e.touch(c)
	e.log(c, events.ActionPause, nil)
	return nil
}

// Unpause thaws a paused container.
func (e *Engine) Unpause(ctx context.Context, ref string) error {
	c, rc, err := e.running(ref)
	if err != nil {
		return err
	}
	if !rc.Paused {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not paused", c.rec.ID))
	}
	if err := e.rt.ResumeContainer(ctx, c.rec.ID); err != nil {
		return fmt.Errorf("cannot unpause container %s: %w", ref, err)
	}
	e.touch(c)
	e.resumeHealth(c)
	e.log(c, events.ActionUnPause, nil)
	return nil
}

// running finds a running container.
func (e *Engine) running(ref string) (*ctr, *runtime.Container, error) {
	c, err := e.lookup(ref)
	if err != nil {
		return nil, nil, err
	}
	rc, err := e.rt.Container(c.rec.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.rec.ID, err)
	}
	if rc.State != runtime.ContainerRunning {
		return nil, nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", c.rec.ID))
	}
	return c, rc, nil
}

// touch wakes c's waiters after a change of state the runtime records.
func (e *Engine) touch(c *ctr) {
	e.mu.Lock()
	c.notify()
	e.mu.Unlock()
}
