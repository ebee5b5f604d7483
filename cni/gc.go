package cni

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// GC detaches every pod that libcni's cache says is attached but that keep
// does not list: the pods a crash or a lost record left behind. berthd
// calls it once at start-up, after loading its records and before serving,
// so no Attach is in flight. It returns the IDs it detached; a pod whose
// DEL fails stays cached for the next GC and its error is joined in.
//
// A crash in the middle of an ADD leaves no cache entry, so GC cannot see
// that pod; its lease goes when the same ID is detached (the runtime's own
// cleanup of a pod it never acknowledged) or by the plugins' CNI GC, which
// needs cniVersion 1.1.0 configs.
func (m *Manager) GC(ctx context.Context, keep []string) ([]string, error) {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("cni gc: read cache: %w", err)
	}
	var (
		done []string
		errs []error
	)
	for _, a := range atts {
		// One entry per network and interface; lo has its own, detached
		// together with the pod's network.
		if slices.Contains(keep, a.ContainerID) || slices.Contains(done, a.ContainerID) {
			continue
		}
		if err := m.Detach(ctx, DetachRequest{ID: a.ContainerID, NetNS: a.NetNS}); err != nil {
			errs = append(errs, fmt.Errorf("cni gc: %w", err))
			continue
		}
		done = append(done, a.ContainerID)
	}
	return done, errors.Join(errs...)
}
