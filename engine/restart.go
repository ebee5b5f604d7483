package engine

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/runtime"
)

// Restart stops the container if it runs (as Stop) and starts it again,
// as the user's start (the restart count is reset).
func (e *Engine) Restart(ctx context.Context, ref string, o StopOptions) error {
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
		return fmt.Errorf("restart container %s: %w", c.rec.ID, err)
	}
	if rc.State == runtime.ContainerRunning {
		if err := e.stop(ctx, c, o); err != nil {
			return fmt.Errorf("cannot restart container %s: %w", ref, err)
		}
	}
	if err := e.start(ctx, c, startOptions{byUser: true}); err != nil {
		return fmt.Errorf("cannot restart container %s: %w", ref, err)
	}
	e.log(c, events.ActionRestart, nil)
	return nil
}
