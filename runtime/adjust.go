package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/spec"
)

// adjust runs a ContainerConfig's Adjust hook on the generated spec and
// takes back what the runtime keeps of it: the cgroup path (which Remove
// cleans up) and, when the hook changed them, the resources, fitted to
// this host as the caller's were and recorded as applied.
func (m *Manager) adjust(ctx context.Context, c *container, hook func(context.Context, *specs.Spec) error, oci *specs.Spec) error {
	before, err := copyResources(oci)
	if err != nil {
		return err
	}
	if err := hook(ctx, oci); err != nil {
		return err
	}
	if oci.Linux == nil {
		oci.Linux = &specs.Linux{}
	}
	if oci.Linux.Resources == nil {
		oci.Linux.Resources = &specs.LinuxResources{}
	}
	m.mu.Lock()
	c.rec.CgroupsPath = oci.Linux.CgroupsPath
	m.mu.Unlock()
	if reflect.DeepEqual(before, oci.Linux.Resources) {
		return nil
	}
	fitted, err := m.fitResources(ctx, c.rec.ID, resourcesFromOCI(oci.Linux.Resources))
	if err != nil {
		return err
	}
	// The limits Berth models are written as Generate writes them; the
	// others the hook set (block I/O, RDT, realtime CPU, ...) stay.
	lr, err := linuxResources(fitted)
	if err != nil {
		return err
	}
	r := oci.Linux.Resources
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	cpu := lr.CPU
	if cpu == nil {
		cpu = &specs.LinuxCPU{}
	}
	r.CPU.Shares, r.CPU.Quota, r.CPU.Period, r.CPU.Cpus, r.CPU.Mems = cpu.Shares, cpu.Quota, cpu.Period, cpu.Cpus, cpu.Mems
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	mem := lr.Memory
	if mem == nil {
		mem = &specs.LinuxMemory{}
	}
	r.Memory.Limit, r.Memory.Swap = mem.Limit, mem.Swap
	r.Pids = lr.Pids
	r.HugepageLimits = lr.HugepageLimits
	r.Unified = lr.Unified
	m.mu.Lock()
	c.rec.Config.Spec.Resources = fitted
	m.mu.Unlock()
	return nil
}

// copyResources is a deep copy of the spec's resources, to see whether a
// hook changed them.
func copyResources(sp *specs.Spec) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if sp.Linux == nil || sp.Linux.Resources == nil {
		return out, nil
	}
	b, err := json.Marshal(sp.Linux.Resources)
	if err != nil {
		return nil, fmt.Errorf("copy resources: %w", err)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("copy resources: %w", err)
	}
	return out, nil
}

// resourcesFromOCI reads the limits Berth models back from an OCI spec.
func resourcesFromOCI(r *specs.LinuxResources) spec.Resources {
	var out spec.Resources
	if c := r.CPU; c != nil {
		out.CPUShares = deref(c.Shares)
		out.CPUQuota = deref(c.Quota)
		out.CPUPeriod = deref(c.Period)
		out.CpusetCpus, out.CpusetMems = c.Cpus, c.Mems
	}
	if mem := r.Memory; mem != nil {
		out.MemoryLimit = deref(mem.Limit)
		if mem.Swap != nil {
			s := *mem.Swap
			out.MemorySwap = &s
		}
		if mem.Swappiness != nil {
			s := *mem.Swappiness
			out.MemorySwappiness = &s
		}
		out.DisableOOMKiller = deref(mem.DisableOOMKiller)
	}
	if b := r.BlockIO; b != nil {
		out.BlkioWeight = deref(b.Weight)
	}
	if p := r.Pids; p != nil {
		out.PidsLimit = deref(p.Limit)
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, spec.HugepageLimit{PageSize: h.Pagesize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = r.Unified
	}
	return out
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
