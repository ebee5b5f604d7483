package engine

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/imagestore"
)

// imageMountSnapshot names the read-only view of a container's i-th mount
// (--mount type=image).
func imageMountSnapshot(id string, i int) string { return id + "-im" + strconv.Itoa(i) }

// viewImageMounts makes the read-only view of each image mount's image,
// narrowed to its sub-path, and records the image's ID as the source (the
// name the request gave stays the mount's Name).
func (e *Engine) viewImageMounts(ctx context.Context, mps []MountPoint) error {
	for i := range mps {
		mp := &mps[i]
		if mp.Type != mount.TypeImage {
			continue
		}
		img, err := e.images.Get(ctx, mp.Name)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.ErrNotFound.WithMessage("No such image: " + mp.Name)
			}
			return fmt.Errorf("image mount %s: %w", mp.Destination, err)
		}
		ms, err := e.images.View(ctx, mp.Snapshot, img.ID.String())
		if err != nil {
			return fmt.Errorf("image mount %s: %w", mp.Destination, err)
		}
		if len(ms) != 1 {
			return fmt.Errorf("image mount %s: %w: snapshot has %d mounts, want 1", mp.Destination, errdefs.ErrNotImplemented, len(ms))
		}
		m := ms[0]
		if mp.Subpath != "" {
			if m, err = imagestore.SubPath(m, mp.Subpath); err != nil {
				if errdefs.IsNotFound(err) {
					return invalid("cannot access path %s in image %s: %v", mp.Subpath, mp.Name, err)
				}
				return fmt.Errorf("image mount %s: %w", mp.Destination, err)
			}
		}
		mp.ImageMount = &m
		mp.Source = img.ID.String()
	}
	return nil
}

// removeImageMounts removes the image mounts' views; a missing one is no
// error.
func (e *Engine) removeImageMounts(ctx context.Context, mps []MountPoint) error {
	var errs []error
	for _, mp := range mps {
		if mp.Type == mount.TypeImage && mp.Snapshot != "" {
			errs = append(errs, e.images.RemoveSnapshot(ctx, mp.Snapshot))
		}
	}
	return errors.Join(errs...)
}
