package cri

import (
	"context"
	"errors"
	"fmt"
	"regexp"

	"github.com/berth-dev/berth/runtime"
)

// SnapshotOwners is what SweepSnapshots needs: the image store's
// snapshots and the runtime's containers.
type SnapshotOwners interface {
	Snapshots(ctx context.Context) ([]string, error)
	RemoveSnapshot(ctx context.Context, id string) error
}

// ContainerLister lists the runtime's containers.
type ContainerLister interface {
	ListContainers() []*runtime.Container
}

// snapshotName matches the snapshots CreateContainer makes: the container's
// ID, or imageVolumeID's <id>-iv<n>.
var snapshotName = regexp.MustCompile(`^([0-9a-f]{64})(-iv[0-9]+)?$`)

// SweepSnapshots removes the snapshots CreateContainer made for containers
// the runtime does not know: CreateContainer prepares the rootfs before the
// runtime records the container, and the runtime's pending record is not
// synced, so a crash or power loss in between leaves a snapshot no one
// owns. Run it at start-up, before serving. Snapshots named otherwise are
// not CreateContainer's and stay. It returns the IDs removed.
func SweepSnapshots(ctx context.Context, images SnapshotOwners, rt ContainerLister) ([]string, error) {
	ids, err := images.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("sweep snapshots: %w", err)
	}
	known := map[string]bool{}
	for _, c := range rt.ListContainers() {
		known[c.ID] = true
	}
	var removed []string
	var errs []error
	for _, id := range ids {
		m := snapshotName.FindStringSubmatch(id)
		if m == nil || known[m[1]] {
			continue
		}
		if err := images.RemoveSnapshot(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	if err := errors.Join(errs...); err != nil {
		return removed, fmt.Errorf("sweep snapshots: %w", err)
	}
	return removed, nil
}
