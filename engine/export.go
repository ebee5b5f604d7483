package engine

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/engine/archive"
)

// Export writes the container's root file system as a tar (docker
// export): the image's content with the container's changes, without
// its volumes and bind mounts, as dockerd exports it.
func (e *Engine) Export(ctx context.Context, ref string, w io.Writer) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	e.mu.Lock()
	id := c.rec.ID
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return fmt.Errorf("export container %s: %w", id, err)
	}
	if rc.Bundle == "" {
		return fmt.Errorf("export container %s: no file system: %w", id, errdefs.ErrFailedPrecondition)
	}
	if err := archive.Export(ctx, filepath.Join(rc.Bundle, "rootfs"), w); err != nil {
		return fmt.Errorf("export container %s: %w", id, err)
	}
	e.log(c, events.ActionExport, nil)
	return nil
}
