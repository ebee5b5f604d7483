package cni

import (
	"context"
	"errors"
	"fmt"
	"slices"
)

// GC detaches every pod that libcni's cache says is attached, or whose
// intent says an Attach began, but that keep does not list: the pods a
// crash or a lost record left behind, including those a crash interrupted
// in the middle of their ADD. berthd calls it once at start-up, after
// loading its records and before serving, so no Attach is in flight. It
// returns the IDs it detached; a pod whose DEL fails stays recorded for
// the next GC and its error is joined in.
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
		req := DetachRequest{ID: a.ContainerID, NetNS: a.NetNS}
		if it, err := m.readIntent(a.ContainerID); err == nil && it != nil {
			req = it.Args
		}
		if err := m.Detach(ctx, req); err != nil {
			errs = append(errs, fmt.Errorf("cni gc: %w", err))
			continue
		}
		done = append(done, a.ContainerID)
	}
	ids, err := m.intentIDs()
	if err != nil {
		return done, errors.Join(append(errs, fmt.Errorf("cni gc: %w", err))...)
	}
	for _, id := range ids {
		if slices.Contains(keep, id) || slices.Contains(done, id) {
			continue
		}
		it, err := m.readIntent(id)
		if err != nil {
			// Torn by a crash while it was first written: no plugin had
			// run yet.
			if err := m.removeIntent(id); err != nil {
				errs = append(errs, fmt.Errorf("cni gc: %w", err))
			}
			continue
		}
		if err := m.Detach(ctx, it.Args); err != nil {
			errs = append(errs, fmt.Errorf("cni gc: %w", err))
			continue
		}
		done = append(done, id)
	}
	return done, errors.Join(errs...)
}

// Release detaches the pod id, with its network namespace still at netns,
// if an Attach of it may have begun (it has an intent or a cached
// attachment); otherwise it does nothing and returns false. The runtime
// calls it for a pod whose creation a crash interrupted, before it
// unpins the namespace: the bridge plugin finds the addresses whose
// masquerade rules it must remove only inside the namespace.
func (m *Manager) Release(ctx context.Context, id, netns string) (bool, error) {
	req := DetachRequest{ID: id, NetNS: netns}
	it, err := m.readIntent(id)
	switch {
	case err == nil && it != nil:
		req = it.Args
		req.NetNS = netns
	default:
		atts, err := m.cni.GetCachedAttachments(id)
		if err != nil {
			return false, fmt.Errorf("release pod %s: read cni cache: %w", id, err)
		}
		if len(atts) == 0 {
			// A damaged intent with nothing cached: no plugin got far
			// enough to leave a record we could use.
			return false, m.removeIntent(id)
		}
	}
	if err := m.Detach(ctx, req); err != nil {
		return false, fmt.Errorf("release pod %s: %w", id, err)
	}
	return true, nil
}
