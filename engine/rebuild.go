package engine

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/runtime"
)

// rebuildState is what a rebuild needs to make the runtime's side of a
// container again: its sandbox's and its container's configs, as the
// runtime recorded them. It is kept in the engine's record while a rebuild
// runs, so that one a crash interrupts is finished by the next start.
type rebuildState struct {
	Sandbox   runtime.SandboxConfig
	Container runtime.ContainerConfig
}

// rebuildIfLost makes the container's sandbox and runtime container again
// when the sandbox lost its namespaces (the host rebooted: the pins under
// the state directory are gone), on the same writable layer, so that a
// restart policy or the user can start it after a reboot. Called with
// c.op held, before a start.
func (e *Engine) rebuildIfLost(ctx context.Context, c *ctr) error {
	e.mu.Lock()
	id, pending := c.rec.ID, c.rec.Rebuild
	e.mu.Unlock()
	if pending == nil {
		sb, err := e.rt.Sandbox(id)
		if err != nil || sb.State == runtime.SandboxReady {
			return nil // nothing lost (or nothing to rebuild from)
		}
		rc, err := e.rt.Container(id)
		if err != nil {
			return fmt.Errorf("rebuild container %s: %w", id, err)
		}
		pending = &rebuildState{Sandbox: sb.Config, Container: rc.Config}
		if err := e.update(c, func(r *record) { r.Rebuild = pending }); err != nil {
			return err
		}
	}
	// Each step tolerates what is gone already: this may be a second try.
	if err := e.rt.RemoveContainer(ctx, id); err != nil {
		return fmt.Errorf("rebuild container %s: %w", id, err)
	}
	if err := e.rt.RemoveSandbox(ctx, id); err != nil {
		return fmt.Errorf("rebuild container %s: %w", id, err)
	}
	sc := pending.Sandbox
	sc.ID = id
	if _, err := e.rt.CreateSandbox(ctx, sc); err != nil {
		return fmt.Errorf("rebuild container %s: %w", id, err)
	}
	cc := pending.Container
	cc.ID, cc.SandboxID = id, id
	if _, err := e.rt.CreateContainer(ctx, cc); err != nil {
		_ = e.rt.RemoveSandbox(context.WithoutCancel(ctx), id)
		return fmt.Errorf("rebuild container %s: %w", id, err)
	}
	return e.update(c, func(r *record) { r.Rebuild = nil })
}
