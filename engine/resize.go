package engine

import (
	"context"
	"fmt"

	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/runtime"
)

// Resize sets the size of the container's terminal.
func (e *Engine) Resize(ctx context.Context, ref string, height, width uint16) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	rc, err := e.rt.Container(c.rec.ID)
	if err != nil {
		return fmt.Errorf("resize container %s: %w", c.rec.ID, err)
	}
	if rc.State != runtime.ContainerRunning && rc.State != runtime.ContainerCreated {
		return errNotRunning(c.rec.ID)
	}
	if err := e.rt.ResizeContainer(ctx, c.rec.ID, runtime.Size{Width: width, Height: height}); err != nil {
		return fmt.Errorf("resize container %s: %w", c.rec.ID, err)
	}
	e.log(c, events.ActionResize, map[string]string{"height": fmt.Sprint(height), "width": fmt.Sprint(width)})
	return nil
}
