package engine

import (
	"context"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime"
)

// WaitResult is how a wait ended: the container's exit code.
type WaitResult struct {
	StatusCode int
	// Err is set when the wait could not tell (berthd shutting down).
	Err error
}

// Wait returns a channel that receives the container's exit code once
// cond holds: not-running (now or at the next exit that no restart policy
// follows), next-exit (the next exit), removed (the container is gone).
// An unknown container is an error at once, before any waiting, so that
// the HTTP front can answer 404 rather than 200.
func (e *Engine) Wait(ctx context.Context, ref string, cond container.WaitCondition) (<-chan WaitResult, error) {
	switch cond {
	case "", container.WaitConditionNotRunning, container.WaitConditionNextExit, container.WaitConditionRemoved:
	default:
		return nil, invalid("invalid condition: %q", cond)
	}
	c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	before := c.exits
	e.mu.Unlock()
	out := make(chan WaitResult, 1)
	go func() {
		for {
			e.mu.Lock()
			exits, removed, restarting, ch, id := c.exits, c.removed, c.restarting, c.changed, c.rec.ID
			e.mu.Unlock()
			code, running := 0, false
			if rc, err := e.rt.Container(id); err == nil {
				code, running = int(rc.ExitCode), rc.State == runtime.ContainerRunning
			} else if removed {
				code = c.lastExitCode()
			}
			var done bool
			switch cond {
			case container.WaitConditionNextExit:
				done = exits > before || removed
			case container.WaitConditionRemoved:
				done = removed
			default:
				done = removed || (!running && !restarting && (exits > before || !e.exitPending(id)))
			}
			if done {
				if removed {
					code = c.lastExitCode()
				}
				out <- WaitResult{StatusCode: code}
				return
			}
			select {
			case <-ch:
			case <-ctx.Done():
				out <- WaitResult{Err: ctx.Err()}
				return
			case <-e.closed:
				out <- WaitResult{Err: context.Canceled}
				return
			}
		}
	}()
	return out, nil
}

// exitPending reports whether the runtime recorded an exit the engine has
// not handled yet (its restart policy may still start the container).
func (e *Engine) exitPending(id string) bool {
	rc, err := e.rt.Container(id)
	if err != nil || rc.State != runtime.ContainerExited {
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c := e.containers[id]
	return c != nil && rc.FinishedAt.After(c.rec.HandledExit)
}

// lastExitCode is the exit code of the container's last handled exit,
// kept for waiters of a removal.
func (c *ctr) lastExitCode() int { return c.exitCode }
