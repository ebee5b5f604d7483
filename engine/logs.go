package engine

import (
	"context"
	"io"

	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/runtime"
)

// Logs writes the container's log to w as GET /containers/{id}/logs sends
// it (engine/logs' Read: stdcopy frames, or raw for a terminal). Follow
// goes on until the container's run ends, and applies only to a running
// container, as in dockerd. It returns before writing anything when it
// refuses (no such container, a driver that keeps nothing, no stream).
func (e *Engine) Logs(ctx context.Context, ref string, o logs.ReadOptions, w io.Writer) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	if o.Follow {
		if rc, err := e.rt.Container(rec.ID); err != nil || rc.State != runtime.ContainerRunning {
			o.Follow = false
		} else {
			stopped := make(chan struct{})
			go e.closeWhenRunEnds(ctx, c, rec.ID, stopped)
			o.Stopped = stopped
		}
	}
	return e.logs.Read(ctx, logContainer(e.containerDir(rec.ID), rec), o, w)
}

// closeWhenRunEnds closes ended once the container's current run exited.
func (e *Engine) closeWhenRunEnds(ctx context.Context, c *ctr, id string, ended chan struct{}) {
	defer close(ended)
	e.mu.Lock()
	before := c.exits
	e.mu.Unlock()
	for {
		e.mu.Lock()
		exited, ch := c.exits > before || c.removed, c.changed
		e.mu.Unlock()
		if exited {
			return
		}
		if rc, err := e.rt.Container(id); err != nil || rc.State != runtime.ContainerRunning {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}
