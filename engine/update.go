package engine

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/runtime"
)

// Update changes a container's resources and restart policy as docker
// update does: the fields the request sets replace the stored ones, with
// dockerd's checks; a running or created container gets them at once in
// its cgroup, a stopped one at its next start.
func (e *Engine) Update(ctx context.Context, ref string, u container.UpdateConfig) ([]string, error) {
	c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	c.op.Lock()
	defer c.op.Unlock()
	e.mu.Lock()
	id, removing := c.rec.ID, c.rec.Removing
	hc := c.rec.clone().HostConfig
	e.mu.Unlock()
	cannot := func(err error) error {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Cannot update container %s: %s", id, err.Error()))
	}
	if removing {
		return nil, cannot(fmt.Errorf("container is marked for removal and cannot be \"update\""))
	}
	warnings := discardUnsupported(&u.Resources, hostCgroupFeatures())
	w, err := verifyResources(&u.Resources)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, w...)
	if err := mergeUpdate(hc, u); err != nil {
		return nil, cannot(err)
	}
	more, err := verifyResources(&hc.Resources)
	if err != nil {
		return nil, err
	}
	warnings = append(warnings, more...)
	r, err := resources(hc.Resources)
	if err != nil {
		return nil, err
	}
	// An explicit 0 or -1 lifts the PIDs limit (runc's "max").
	if u.PidsLimit != nil && *u.PidsLimit <= 0 {
		r.PidsLimit = -1
	}
	rc, err := e.rt.Container(id)
	if err != nil {
		return nil, fmt.Errorf("update container %s: %w", id, err)
	}
	live := rc.State == runtime.ContainerRunning || rc.State == runtime.ContainerCreated
	if live {
		if err := e.rt.UpdateContainerResources(ctx, id, r); err != nil {
			return nil, cannot(err)
		}
	}
	if err := e.update(c, func(rec *record) {
		rec.HostConfig.Resources = hc.Resources
		rec.HostConfig.RestartPolicy = hc.RestartPolicy
		rec.ResourcesPending = !live
	}); err != nil {
		return nil, err
	}
	e.log(c, events.ActionUpdate, nil)
	if warnings == nil {
		warnings = []string{}
	}
	return warnings, nil
}

// applyPendingResources gives a container that was updated while stopped
// its resources, once a start recreated its process; called with c.op
// held.
func (e *Engine) applyPendingResources(ctx context.Context, c *ctr) error {
	e.mu.Lock()
	pending, id := c.rec.ResourcesPending, c.rec.ID
	res := c.rec.HostConfig.Resources
	e.mu.Unlock()
	if !pending {
		return nil
	}
	r, err := resources(res)
	if err != nil {
		return err
	}
	if res.PidsLimit != nil && *res.PidsLimit <= 0 {
		r.PidsLimit = -1
	}
	if err := e.rt.UpdateContainerResources(ctx, id, r); err != nil {
		return fmt.Errorf("start container %s: apply updated resources: %w", id, err)
	}
	return e.update(c, func(rec *record) { rec.ResourcesPending = false })
}

// mergeUpdate applies an update to a stored host config with dockerd's
// rules (container.UpdateContainer): set fields replace, NanoCPUs and a
// CFS period or quota exclude each other, a memory limit above the stored
// memory+swap limit needs a new one too, and the restart policy of an
// --rm container stays.
func mergeUpdate(hc *container.HostConfig, u container.UpdateConfig) error {
	in, cur := u.Resources, &hc.Resources
	switch {
	case in.NanoCPUs > 0 && cur.CPUPeriod > 0:
		return fmt.Errorf("Conflicting options: Nano CPUs cannot be updated as CPU Period has already been set")
	case in.NanoCPUs > 0 && cur.CPUQuota > 0:
		return fmt.Errorf("Conflicting options: Nano CPUs cannot be updated as CPU Quota has already been set")
	case in.CPUPeriod > 0 && cur.NanoCPUs > 0:
		return fmt.Errorf("Conflicting options: CPU Period cannot be updated as NanoCPUs has already been set")
	case in.CPUQuota > 0 && cur.NanoCPUs > 0:
		return fmt.Errorf("Conflicting options: CPU Quota cannot be updated as NanoCPUs has already been set")
	}
	if in.BlkioWeight != 0 {
		cur.BlkioWeight = in.BlkioWeight
	}
	if in.CPUShares != 0 {
		cur.CPUShares = in.CPUShares
	}
	if in.NanoCPUs != 0 {
		cur.NanoCPUs = in.NanoCPUs
	}
	if in.CPUPeriod != 0 {
		cur.CPUPeriod = in.CPUPeriod
	}
	if in.CPUQuota != 0 {
		cur.CPUQuota = in.CPUQuota
	}
	if in.CpusetCpus != "" {
		cur.CpusetCpus = in.CpusetCpus
	}
	if in.CpusetMems != "" {
		cur.CpusetMems = in.CpusetMems
	}
	if in.Memory != 0 {
		// The stored memory+swap limit as dockerd keeps it: twice the
		// memory when only memory was given at create.
		swap := cur.MemorySwap
		if swap == 0 && cur.Memory > 0 {
			swap = 2 * cur.Memory
		}
		if in.Memory > swap && in.MemorySwap == 0 {
			return fmt.Errorf("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time")
		}
		if cur.MemorySwap == 0 && cur.Memory > 0 {
			cur.MemorySwap = swap
		}
		cur.Memory = in.Memory
	}
	if in.MemorySwap != 0 {
		cur.MemorySwap = in.MemorySwap
	}
	if in.MemoryReservation != 0 {
		cur.MemoryReservation = in.MemoryReservation
	}
	if in.PidsLimit != nil {
		v := *in.PidsLimit
		cur.PidsLimit = &v
	}
	if u.RestartPolicy.Name != "" {
		if err := container.ValidateRestartPolicy(u.RestartPolicy); err != nil {
			return err
		}
		if hc.AutoRemove && u.RestartPolicy != hc.RestartPolicy {
			return fmt.Errorf("Restart policy cannot be updated because AutoRemove is enabled for the container")
		}
		hc.RestartPolicy = u.RestartPolicy
	}
	return nil
}
