package engine

import (
	"context"

	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/internal/logctx"
)

// Rename gives the container a new name, atomically: the old name is free
// and the new one taken in one step.
func (e *Engine) Rename(ctx context.Context, ref, newName string) error {
	if newName == "" {
		return invalid("Neither old nor new names may be empty")
	}
	name, err := checkName(newName)
	if err != nil {
		return err
	}
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	e.mu.Lock()
	old := c.rec.Name
	if old == name {
		e.mu.Unlock()
		return invalid("Renaming a container with the same name as its current name")
	}
	if holder, ok := e.names[name]; ok {
		e.mu.Unlock()
		return nameConflict(name, holder)
	}
	e.names[name] = c.rec.ID
	delete(e.names, old)
	c.rec.Name = name
	e.mu.Unlock()
	if err := e.save(c); err != nil {
		e.mu.Lock()
		c.rec.Name = old
		e.names[old] = c.rec.ID
		delete(e.names, name)
		e.mu.Unlock()
		return err
	}
	if e.net != nil {
		if err := e.net.Rename(ctx, c.rec.ID, name); err != nil {
			logctx.From(ctx).WarnContext(ctx, "rename container in its networks", "id", c.rec.ID, "error", err)
		}
	}
	e.log(c, events.ActionRename, map[string]string{"oldName": "/" + old})
	return nil
}
