package cri

import (
	"maps"
	"slices"

	nriapi "github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// nriPod is a sandbox as NRI plugins see it: the pod's metadata, labels and
// annotations as the kubelet sent them, its cgroup parent and resources,
// its namespaces, pause holder and IPs.
func nriPod(sb *runtime.Sandbox) *nriapi.PodSandbox {
	if sb == nil {
		return &nriapi.PodSandbox{}
	}
	var cfg runtimeapi.PodSandboxConfig
	// A record that does not decode leaves the pod with its runtime
	// metadata only; NRI is told what is known.
	_ = readRecord(sb.Config.Annotations, annPodConfig, &cfg)
	pod := &nriapi.PodSandbox{
		Id:             sb.ID,
		Name:           sb.Config.Name,
		Uid:            sb.Config.UID,
		Namespace:      sb.Config.Namespace,
		Labels:         maps.Clone(sb.Config.Labels),
		Annotations:    visibleAnnotations(sb.Config.Annotations),
		RuntimeHandler: sb.Config.RuntimeHandler,
		Pid:            uint32(max(sb.PausePid, 0)),
		Ips:            slices.Clone(sb.IPs),
		Linux: &nriapi.LinuxPodSandbox{
			CgroupParent: cfg.GetLinux().GetCgroupParent(),
			PodOverhead:  nriResourcesFromCRI(cfg.GetLinux().GetOverhead()),
			PodResources: nriResourcesFromCRI(cfg.GetLinux().GetResources()),
		},
	}
	for _, ns := range []struct{ kind, path string }{
		{"network", sb.NetNSPath}, {"ipc", sb.IPCNSPath}, {"uts", sb.UTSNSPath}, {"user", sb.UserNSPath},
	} {
		if ns.path != "" {
			pod.Linux.Namespaces = append(pod.Linux.Namespaces, &nriapi.LinuxNamespace{Type: ns.kind, Path: ns.path})
		}
	}
	return pod
}

// nriContainer is a container as NRI plugins see it: its metadata and state
// from the runtime's record, the rest from its OCI spec (nil before the
// runtime has one, or when it cannot be read).
func nriContainer(c *runtime.Container, sp *specs.Spec) *nriapi.Container {
	var cfg runtimeapi.ContainerConfig
	_ = readRecord(c.Config.Annotations, annContainerConfig, &cfg)
	out := &nriapi.Container{
		Id:            c.ID,
		PodSandboxId:  c.SandboxID,
		Name:          c.Config.Name,
		State:         nriState(c.State),
		Labels:        maps.Clone(c.Config.Labels),
		Annotations:   visibleAnnotations(c.Config.Annotations),
		Pid:           uint32(max(c.Pid, 0)),
		CreatedAt:     unixNano(c.CreatedAt),
		StartedAt:     unixNano(c.StartedAt),
		FinishedAt:    unixNano(c.FinishedAt),
		ExitCode:      c.ExitCode,
		StatusReason:  c.Reason,
		StatusMessage: c.Message,
		Linux:         &nriapi.LinuxContainer{},
	}
	if c.Config.Image != "" || c.Config.ImageID != "" {
		out.Image = &nriapi.Image{Name: c.Config.Image, Digest: c.Config.ImageRef, ConfigDigest: c.Config.ImageID}
	}
	if p := cfg.GetLinux().GetSecurityContext().GetSeccomp(); p != nil {
		out.Linux.SeccompProfile = &nriapi.SecurityProfile{
			ProfileType:  nriapi.SecurityProfile_ProfileType(p.GetProfileType()),
			LocalhostRef: p.GetLocalhostRef(),
		}
	}
	for _, d := range cfg.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, &nriapi.CDIDevice{Name: d.GetName()})
	}
	if sp == nil {
		return out
	}
	// The spec's annotations are the CRI's plus the ones containerd puts
	// on containers (container name, sandbox id, ...), which plugins use.
	for k, v := range sp.Annotations {
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[k] = v
	}
	out.Mounts = nriapi.FromOCIMounts(sp.Mounts)
	out.Hooks = nriapi.FromOCIHooks(sp.Hooks)
	if p := sp.Process; p != nil {
		out.Args = slices.Clone(p.Args)
		out.Env = slices.Clone(p.Env)
		for _, l := range p.Rlimits {
			out.Rlimits = append(out.Rlimits, &nriapi.POSIXRlimit{Type: l.Type, Hard: l.Hard, Soft: l.Soft})
		}
		out.User = &nriapi.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: slices.Clone(p.User.AdditionalGids)}
		if p.OOMScoreAdj != nil {
			out.Linux.OomScoreAdj = nriapi.Int(p.OOMScoreAdj)
		}
		out.Linux.IoPriority = nriapi.FromOCILinuxIOPriority(p.IOPriority)
		if p.Scheduler != nil {
			out.Linux.Scheduler = nriapi.FromOCILinuxScheduler(p.Scheduler)
		}
	}
	if l := sp.Linux; l != nil {
		out.Linux.Namespaces = nriapi.FromOCILinuxNamespaces(l.Namespaces)
		out.Linux.Devices = nriapi.FromOCILinuxDevices(l.Devices)
		out.Linux.Resources = nriapi.FromOCILinuxResources(l.Resources, sp.Annotations)
		out.Linux.CgroupsPath = l.CgroupsPath
		if l.Seccomp != nil {
			out.Linux.SeccompPolicy = nriapi.FromOCILinuxSeccomp(l.Seccomp)
		}
		if len(l.Sysctl) > 0 {
			out.Linux.Sysctl = maps.Clone(l.Sysctl)
		}
	}
	return out
}

func nriState(s runtime.ContainerState) nriapi.ContainerState {
	switch s {
	case runtime.ContainerCreated:
		return nriapi.ContainerState_CONTAINER_CREATED
	case runtime.ContainerRunning:
		return nriapi.ContainerState_CONTAINER_RUNNING
	case runtime.ContainerExited:
		return nriapi.ContainerState_CONTAINER_STOPPED
	}
	return nriapi.ContainerState_CONTAINER_UNKNOWN
}

// nriResourcesFromCRI converts a pod's CRI resources (overhead, totals).
func nriResourcesFromCRI(r *runtimeapi.LinuxContainerResources) *nriapi.LinuxResources {
	if r == nil {
		return nil
	}
	return nriResources(resourcesFromCRI(r))
}

// nriResources converts the limits Berth models; zero values stay unset,
// as they are unset in the spec.
func nriResources(r spec.Resources) *nriapi.LinuxResources {
	out := &nriapi.LinuxResources{Cpu: &nriapi.LinuxCPU{Cpus: r.CpusetCpus, Mems: r.CpusetMems}, Memory: &nriapi.LinuxMemory{}}
	if r.CPUShares != 0 {
		out.Cpu.Shares = nriapi.UInt64(r.CPUShares)
	}
	if r.CPUQuota != 0 {
		out.Cpu.Quota = nriapi.Int64(r.CPUQuota)
	}
	if r.CPUPeriod != 0 {
		out.Cpu.Period = nriapi.UInt64(r.CPUPeriod)
	}
	if r.MemoryLimit != 0 {
		out.Memory.Limit = nriapi.Int64(r.MemoryLimit)
	}
	if r.MemorySwap != nil {
		out.Memory.Swap = nriapi.Int64(*r.MemorySwap)
	}
	if r.PidsLimit != 0 {
		out.Pids = &nriapi.LinuxPids{Limit: r.PidsLimit}
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &nriapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}
	return out
}

// mergeNRIResources sets on r what u sets: a plugin's update names the
// limits it changes, and the others stay as they are (as in containerd).
func mergeNRIResources(r spec.Resources, u *nriapi.LinuxResources) spec.Resources {
	if u == nil {
		return r
	}
	if c := u.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			r.CPUShares = v.GetValue()
		}
		if v := c.GetQuota(); v != nil {
			r.CPUQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			r.CPUPeriod = v.GetValue()
		}
		if c.GetCpus() != "" {
			r.CpusetCpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			r.CpusetMems = c.GetMems()
		}
	}
	if m := u.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			r.MemoryLimit = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			s := v.GetValue()
			r.MemorySwap = &s
		}
	}
	if p := u.GetPids(); p != nil {
		r.PidsLimit = p.GetLimit()
	}
	if len(u.GetHugepageLimits()) > 0 {
		r.HugepageLimits = nil
		for _, h := range u.GetHugepageLimits() {
			r.HugepageLimits = append(r.HugepageLimits, spec.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
		}
	}
	if len(u.GetUnified()) > 0 {
		r.Unified = maps.Clone(r.Unified)
		if r.Unified == nil {
			r.Unified = map[string]string{}
		}
		maps.Copy(r.Unified, u.GetUnified())
	}
	return r
}
