package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-dev/berth/imagestore"
)

// SnapshotPrefix starts the ID of every snapshot a build makes, so that
// start-up reconciliation can tell them from the others'.
const SnapshotPrefix = "build-"

// Swept is what Sweep removed.
type Swept struct {
	Containers []string
	Snapshots  []string
	Dirs       []string
}

// Sweep removes what builds that a killed berthd left behind: their
// containers (still running ones are killed), their mounts and temporary
// dirs, and their snapshots. Run it at start-up, before any build (and
// before the daemon's snapshot reconciliation, which then finds them
// unmounted); the image store's GC then frees the layers they made (no
// image or cache record names them, and no lease survives a restart).
func (b *Builder) Sweep(ctx context.Context) (Swept, error) {
	var sw Swept
	var errs []error
	for _, c := range b.rt.ListContainers() {
		if err := b.rt.RemoveContainer(ctx, c.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		sw.Containers = append(sw.Containers, c.ID)
	}
	// Bridge builds' sandboxes: off the network, then gone.
	for _, s := range b.rt.ListSandboxes() {
		if b.net != nil {
			if err := b.net.Release(ctx, s.ID); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		if err := b.rt.RemoveSandbox(ctx, s.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		sw.Containers = append(sw.Containers, s.ID)
	}
	for _, dir := range []string{filepath.Join(b.cfg.Root, "tmp"), b.cfg.StateDir} {
		if err := unmountBelow(dir); err != nil {
			errs = append(errs, err)
		}
		ents, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, err)
				continue
			}
			sw.Dirs = append(sw.Dirs, p)
		}
	}
	ids, err := b.images.Snapshots(ctx)
	if err != nil {
		errs = append(errs, err)
	}
	for _, id := range ids {
		if !strings.HasPrefix(id, SnapshotPrefix) {
			continue
		}
		if err := b.images.RemoveSnapshot(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		sw.Snapshots = append(sw.Snapshots, id)
	}
	if len(sw.Snapshots) > 0 {
		if err := b.images.GC(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return sw, fmt.Errorf("sweep builds: %w", err)
	}
	return sw, nil
}

// PruneOptions select what Prune removes.
type PruneOptions struct {
	// Until keeps cache entries used after it; zero removes all.
	Until time.Time
}

// Pruned is what Prune removed.
type Pruned struct {
	// Deleted are the IDs of the cache entries (and cache mounts) removed.
	Deleted []string
	// Reclaimed is the space freed in bytes.
	Reclaimed int64
}

// Prune removes the build cache: its records, the layers only they kept,
// and the cache mounts no running build uses.
func (b *Builder) Prune(ctx context.Context, opts PruneOptions) (Pruned, error) {
	res, err := b.images.PruneBuildCache(ctx, imagestore.BuildCachePrune{Until: opts.Until})
	out := Pruned{Reclaimed: res.Reclaimed}
	for _, k := range res.Deleted {
		out.Deleted = append(out.Deleted, k.Encoded())
	}
	if err != nil {
		return out, err
	}
	if opts.Until.IsZero() {
		freed, n, err := b.cacheMounts.prune()
		out.Reclaimed += freed
		for i := 0; i < n; i++ {
			out.Deleted = append(out.Deleted, fmt.Sprintf("cache-mount-%d", i))
		}
		if err != nil {
			return out, fmt.Errorf("prune cache mounts: %w", err)
		}
	}
	return out, nil
}
