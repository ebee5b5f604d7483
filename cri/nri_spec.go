package cri

import (
	"fmt"
	"slices"
	"strings"

	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ociEditor edits an OCI spec in place: the primitives NRI's generator
// (github.com/containerd/nri/pkg/runtime-tools/generate) builds a plugin's
// adjustment from. runtime-tools' own generator would do, at the cost of
// its validation packages in berthd; containerd made the same choice.
type ociEditor struct{ sp *specs.Spec }

func (e ociEditor) Spec() *specs.Spec { return e.sp }

func (e ociEditor) process() *specs.Process {
	if e.sp.Process == nil {
		e.sp.Process = &specs.Process{}
	}
	return e.sp.Process
}

func (e ociEditor) linux() *specs.Linux {
	if e.sp.Linux == nil {
		e.sp.Linux = &specs.Linux{}
	}
	return e.sp.Linux
}

func (e ociEditor) resources() *specs.LinuxResources {
	l := e.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (e ociEditor) cpu() *specs.LinuxCPU {
	r := e.resources()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (e ociEditor) memory() *specs.LinuxMemory {
	r := e.resources()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (e ociEditor) hooks() *specs.Hooks {
	if e.sp.Hooks == nil {
		e.sp.Hooks = &specs.Hooks{}
	}
	return e.sp.Hooks
}

func (e ociEditor) AddAnnotation(key, value string) {
	if e.sp.Annotations == nil {
		e.sp.Annotations = map[string]string{}
	}
	e.sp.Annotations[key] = value
}

func (e ociEditor) RemoveAnnotation(key string) { delete(e.sp.Annotations, key) }

func (e ociEditor) AddDevice(d specs.LinuxDevice) {
	l := e.linux()
	if i := slices.IndexFunc(l.Devices, func(o specs.LinuxDevice) bool { return o.Path == d.Path }); i >= 0 {
		l.Devices[i] = d
		return
	}
	l.Devices = append(l.Devices, d)
}

func (e ociEditor) RemoveDevice(path string) {
	if e.sp.Linux == nil {
		return
	}
	e.sp.Linux.Devices = slices.DeleteFunc(e.sp.Linux.Devices, func(d specs.LinuxDevice) bool { return d.Path == path })
}

// nsTypes are the namespace names NRI uses, as OCI types.
var nsTypes = map[string]specs.LinuxNamespaceType{
	"pid": specs.PIDNamespace, "network": specs.NetworkNamespace, "mount": specs.MountNamespace,
	"ipc": specs.IPCNamespace, "uts": specs.UTSNamespace, "user": specs.UserNamespace,
	"cgroup": specs.CgroupNamespace, "time": specs.TimeNamespace,
}

func nsType(ns string) (specs.LinuxNamespaceType, error) {
	t, ok := nsTypes[ns]
	if !ok {
		return "", fmt.Errorf("unknown namespace %q", ns)
	}
	return t, nil
}

func (e ociEditor) AddOrReplaceLinuxNamespace(ns, path string) error {
	t, err := nsType(ns)
	if err != nil {
		return err
	}
	l := e.linux()
	if i := slices.IndexFunc(l.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t }); i >= 0 {
		l.Namespaces[i].Path = path
		return nil
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (e ociEditor) RemoveLinuxNamespace(ns string) error {
	t, err := nsType(ns)
	if err != nil {
		return err
	}
	if e.sp.Linux != nil {
		e.sp.Linux.Namespaces = slices.DeleteFunc(e.sp.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
	}
	return nil
}

func (e ociEditor) AddPreStartHook(h specs.Hook) {
	e.hooks().Prestart = append(e.hooks().Prestart, h) //nolint:staticcheck // NRI still relays prestart hooks
}

func (e ociEditor) AddPostStartHook(h specs.Hook) {
	e.hooks().Poststart = append(e.hooks().Poststart, h)
}

func (e ociEditor) AddPostStopHook(h specs.Hook) { e.hooks().Poststop = append(e.hooks().Poststop, h) }

func (e ociEditor) AddProcessEnv(name, value string) {
	if name == "" {
		return
	}
	p := e.process()
	kv := name + "=" + value
	if i := slices.IndexFunc(p.Env, func(s string) bool { return strings.HasPrefix(s, name+"=") }); i >= 0 {
		p.Env[i] = kv
		return
	}
	p.Env = append(p.Env, kv)
}

func (e ociEditor) ClearProcessEnv() {
	if e.sp.Process != nil {
		e.sp.Process.Env = []string{}
	}
}

func (e ociEditor) SetProcessArgs(args []string) { e.process().Args = args }

func (e ociEditor) SetProcessOOMScoreAdj(adj int) { e.process().OOMScoreAdj = &adj }

func (e ociEditor) AddMount(m specs.Mount) { e.sp.Mounts = append(e.sp.Mounts, m) }

func (e ociEditor) RemoveMount(dest string) {
	if i := slices.IndexFunc(e.sp.Mounts, func(m specs.Mount) bool { return m.Destination == dest }); i >= 0 {
		e.sp.Mounts = slices.Delete(e.sp.Mounts, i, i+1)
	}
}

func (e ociEditor) ClearMounts() { e.sp.Mounts = []specs.Mount{} }

func (e ociEditor) Mounts() []specs.Mount { return e.sp.Mounts }

func (e ociEditor) AddLinuxSysctl(key, value string) {
	l := e.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (e ociEditor) RemoveLinuxSysctl(key string) {
	if e.sp.Linux != nil {
		delete(e.sp.Linux.Sysctl, key)
	}
}

func (e ociEditor) SetLinuxCgroupsPath(path string) { e.linux().CgroupsPath = path }

func (e ociEditor) SetLinuxRootPropagation(rp string) error {
	switch rp {
	case "", "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable":
	default:
		return fmt.Errorf("rootfs propagation %q is not (r)private, (r)slave, (r)shared or (r)unbindable", rp)
	}
	e.linux().RootfsPropagation = rp
	return nil
}

func (e ociEditor) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := e.resources()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (e ociEditor) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := e.resources()
	if i := slices.IndexFunc(r.HugepageLimits, func(h specs.LinuxHugepageLimit) bool { return h.Pagesize == pageSize }); i >= 0 {
		r.HugepageLimits[i].Limit = limit
		return
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (e ociEditor) AddLinuxResourcesUnified(key, val string) {
	r := e.resources()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (e ociEditor) SetLinuxResourcesCPUShares(v uint64)         { e.cpu().Shares = &v }
func (e ociEditor) SetLinuxResourcesCPUQuota(v int64)           { e.cpu().Quota = &v }
func (e ociEditor) SetLinuxResourcesCPUPeriod(v uint64)         { e.cpu().Period = &v }
func (e ociEditor) SetLinuxResourcesCPURealtimeRuntime(v int64) { e.cpu().RealtimeRuntime = &v }
func (e ociEditor) SetLinuxResourcesCPURealtimePeriod(v uint64) { e.cpu().RealtimePeriod = &v }
func (e ociEditor) SetLinuxResourcesCPUCpus(v string)           { e.cpu().Cpus = v }
func (e ociEditor) SetLinuxResourcesCPUMems(v string)           { e.cpu().Mems = v }
func (e ociEditor) SetLinuxResourcesMemoryLimit(v int64)        { e.memory().Limit = &v }
func (e ociEditor) SetLinuxResourcesMemorySwap(v int64)         { e.memory().Swap = &v }

var _ nrigen.UnderlyingGenerator = ociEditor{}
