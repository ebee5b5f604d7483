package daemon

import (
	"context"
	"errors"
	"fmt"
)

// snapshotOwner is a front that names snapshots in the image store (the
// CRI by container ID; the engine and the builder by their own schemes).
type snapshotOwner interface {
	// HoldsSnapshot says whether name follows the front's naming (mine)
	// and, if so, whether the front still uses it (held).
	HoldsSnapshot(name string) (mine, held bool)
}

// snapshotStore is the image store's side of the sweep.
type snapshotStore interface {
	Snapshots(ctx context.Context) ([]string, error)
	RemoveSnapshot(ctx context.Context, id string) error
}

// sweepSnapshots is start-up reconciliation across the image store and
// every front: a front prepares a snapshot before the runtime (or its own
// record) acknowledges what uses it, and those records are not synced, so a
// crash in between leaves a snapshot no one owns. It removes each snapshot
// that some owner names as its own and none holds; a name no owner knows
// stays, and so does one two owners both name while either holds it (the
// CRI and the engine both name snapshots by 64-hex container IDs). Run it
// before serving. It returns the names removed.
func sweepSnapshots(ctx context.Context, images snapshotStore, owners ...snapshotOwner) ([]string, error) {
	names, err := images.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep snapshots: %w", err)
	}
	var removed []string
	var errs []error
	for _, name := range names {
		named, held := false, false
		for _, o := range owners {
			mine, h := o.HoldsSnapshot(name)
			named = named || mine
			held = held || (mine && h)
		}
		if !named || held {
			continue
		}
		if err := images.RemoveSnapshot(ctx, name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep snapshots: %w", err)
	}
	return removed, nil
}
