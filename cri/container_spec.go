package cri

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/spec"
)

// specInput is everything containerSpec translates: the CRI request, the
// pod's config and the image's config, plus host facts found by the caller.
type specInput struct {
	ID        string
	SandboxID string
	Config    *runtimeapi.ContainerConfig
	Sandbox   *runtimeapi.PodSandboxConfig
	Image     ocispec.ImageConfig
	// Rootfs is the host path where the container's root filesystem is
	// (or will be) mounted.
	Rootfs string
	// AllCaps is what "ALL" and privileged mean (the daemon's capabilities).
	AllCaps []string
	// Devices are the host devices the request's devices resolve to (see
	// resolveDevices); privileged containers get every host device here.
	Devices []spec.Device
	// ImageMounts are the resolved spec mounts of the request's image
	// volumes, by container path.
	ImageMounts map[string]spec.Mount
}

// containerSpec translates a CRI container config into the plain inputs of
// spec.Generate, following containerd's CRI plugin for every default. The
// pod-level parts (namespaces, /etc files, /dev/shm, cgroup parent, OOM
// score floor) are left to the runtime, which knows the sandbox.
func containerSpec(in specInput) (spec.Container, error) {
	cfg := in.Config
	lnx := cfg.GetLinux()
	sc := lnx.GetSecurityContext()

	args, err := containerArgs(cfg, in.Image)
	if err != nil {
		return spec.Container{}, err
	}
	c := spec.Container{
		ID:             in.ID,
		Args:           args,
		Env:            containerEnv(in.Image.Env, cfg.GetEnvs()),
		WorkingDir:     cmpOr(cfg.GetWorkingDir(), in.Image.WorkingDir),
		Terminal:       cfg.GetTty(),
		Hostname:       in.Sandbox.GetHostname(),
		Rootfs:         in.Rootfs,
		ReadOnlyRootfs: sc.GetReadonlyRootfs(),
		Privileged:     sc.GetPrivileged(),
		Capabilities: spec.Capabilities{
			Add:  sc.GetCapabilities().GetAddCapabilities(),
			Drop: sc.GetCapabilities().GetDropCapabilities(),
			All:  in.AllCaps,
		},
		NoNewPrivileges: sc.GetNoNewPrivs(),
		// containerd gives no default masked or read-only paths to CRI
		// containers: the kubelet always sends the ones it wants.
		MaskedPaths:   nonNil(sc.GetMaskedPaths()),
		ReadonlyPaths: nonNil(sc.GetReadonlyPaths()),
		Sysctls:       in.Sandbox.GetLinux().GetSysctls(),
		Devices:       in.Devices,
		Resources:     resourcesFromCRI(lnx.GetResources()),
		Annotations:   containerAnnotations(in),
	}
	if r := lnx.GetResources(); r != nil && r.OomScoreAdj != 0 {
		adj := int(r.OomScoreAdj)
		c.OOMScoreAdj = &adj
	}
	if c.User, err = containerUser(sc, in.Image.User); err != nil {
		return spec.Container{}, err
	}
	if c.Seccomp, err = seccompFromCRI(sc); err != nil {
		return spec.Container{}, err
	}
	c.AppArmor = appArmorFromCRI(sc)
	if c.Mounts, err = containerMounts(cfg.GetMounts(), in.ImageMounts); err != nil {
		return spec.Container{}, err
	}
	return c, nil
}

// containerArgs resolves the command line as Docker and containerd do: the
// request's command replaces the image's entrypoint and drops its cmd; the
// request's args replace the image's cmd.
func containerArgs(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) ([]string, error) {
	command, args := cfg.GetCommand(), cfg.GetArgs()
	if len(command) == 0 {
		if len(args) == 0 {
			args = img.Cmd
		}
		// An entrypoint of [""] is Docker's way of saying "none".
		if !(len(img.Entrypoint) == 1 && img.Entrypoint[0] == "") {
			command = img.Entrypoint
		}
	}
	out := append(slices.Clone(command), args...)
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: neither the container config nor the image gives a command", errdefs.ErrInvalidArgument)
	}
	return out, nil
}

// containerEnv is the image's env followed by the request's; spec.Generate
// lets later entries win.
func containerEnv(image []string, envs []*runtimeapi.KeyValue) []string {
	out := slices.Clone(image)
	for _, kv := range envs {
		out = append(out, kv.GetKey()+"="+string(kv.GetValue()))
	}
	return out
}

// containerUser picks the user as containerd does: run_as_username, else
// run_as_user, else the image's USER; run_as_group replaces the primary
// group.
func containerUser(sc *runtimeapi.LinuxContainerSecurityContext, imageUser string) (spec.User, error) {
	u := spec.User{Spec: imageUser}
	switch {
	case sc.GetRunAsUsername() != "":
		u.Spec = sc.GetRunAsUsername()
	case sc.GetRunAsUser() != nil:
		uid := sc.GetRunAsUser().GetValue()
		if uid < 0 || uid > 1<<32-1 {
			return spec.User{}, fmt.Errorf("%w: run_as_user %d out of range", errdefs.ErrInvalidArgument, uid)
		}
		u.Spec = strconv.FormatInt(uid, 10)
	}
	if g := sc.GetRunAsGroup(); g != nil {
		if sc.GetRunAsUser() == nil && sc.GetRunAsUsername() == "" {
			return spec.User{}, fmt.Errorf("%w: run_as_group needs run_as_user or run_as_username", errdefs.ErrInvalidArgument)
		}
		if g.GetValue() < 0 || g.GetValue() > 1<<32-1 {
			return spec.User{}, fmt.Errorf("%w: run_as_group %d out of range", errdefs.ErrInvalidArgument, g.GetValue())
		}
		gid := uint32(g.GetValue())
		u.GID = &gid
	}
	for _, g := range sc.GetSupplementalGroups() {
		if g < 0 || g > 1<<32-1 {
			return spec.User{}, fmt.Errorf("%w: supplemental group %d out of range", errdefs.ErrInvalidArgument, g)
		}
		u.SupplementalGroups = append(u.SupplementalGroups, uint32(g))
	}
	switch sc.GetSupplementalGroupsPolicy() {
	case runtimeapi.SupplementalGroupsPolicy_Merge:
		u.GroupsPolicy = spec.GroupsMerge
	case runtimeapi.SupplementalGroupsPolicy_Strict:
		u.GroupsPolicy = spec.GroupsStrict
	default:
		return spec.User{}, fmt.Errorf("%w: unknown supplemental groups policy %v", errdefs.ErrInvalidArgument, sc.GetSupplementalGroupsPolicy())
	}
	return u, nil
}

// seccompFromCRI reads the seccomp field, or the deprecated
// seccomp_profile_path when the field is absent. Nothing means unconfined,
// as in containerd (the kubelet asks for RuntimeDefault explicitly).
func seccompFromCRI(sc *runtimeapi.LinuxContainerSecurityContext) (spec.Seccomp, error) {
	if p := sc.GetSeccomp(); p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return spec.Seccomp{Kind: spec.SeccompRuntimeDefault}, nil
		case runtimeapi.SecurityProfile_Unconfined:
			return spec.Seccomp{Kind: spec.SeccompUnconfined}, nil
		case runtimeapi.SecurityProfile_Localhost:
			ref := p.GetLocalhostRef()
			if !path.IsAbs(ref) {
				return spec.Seccomp{}, fmt.Errorf("%w: seccomp localhost profile %q is not an absolute path", errdefs.ErrInvalidArgument, ref)
			}
			return spec.Seccomp{Kind: spec.SeccompLocalhost, LocalhostPath: ref}, nil
		default:
			return spec.Seccomp{}, fmt.Errorf("%w: unknown seccomp profile type %v", errdefs.ErrInvalidArgument, p.GetProfileType())
		}
	}
	switch p := sc.GetSeccompProfilePath(); {
	case p == "" || p == "unconfined":
		return spec.Seccomp{Kind: spec.SeccompUnconfined}, nil
	case p == "runtime/default" || p == "docker/default":
		return spec.Seccomp{Kind: spec.SeccompRuntimeDefault}, nil
	case strings.HasPrefix(p, "localhost/"):
		ref := strings.TrimPrefix(p, "localhost/")
		if !path.IsAbs(ref) {
			return spec.Seccomp{}, fmt.Errorf("%w: seccomp localhost profile %q is not an absolute path", errdefs.ErrInvalidArgument, ref)
		}
		return spec.Seccomp{Kind: spec.SeccompLocalhost, LocalhostPath: ref}, nil
	default:
		return spec.Seccomp{}, fmt.Errorf("%w: unknown seccomp profile %q", errdefs.ErrInvalidArgument, p)
	}
}

// appArmorFromCRI passes the choice on; spec.Generate ignores it on a kernel
// without AppArmor.
func appArmorFromCRI(sc *runtimeapi.LinuxContainerSecurityContext) spec.AppArmor {
	if p := sc.GetApparmor(); p != nil {
		switch p.GetProfileType() {
		case runtimeapi.SecurityProfile_RuntimeDefault:
			return spec.AppArmor{Kind: spec.AppArmorRuntimeDefault}
		case runtimeapi.SecurityProfile_Unconfined:
			return spec.AppArmor{Kind: spec.AppArmorUnconfined}
		case runtimeapi.SecurityProfile_Localhost:
			return spec.AppArmor{Kind: spec.AppArmorLocalhost, Profile: p.GetLocalhostRef()}
		}
	}
	switch p := sc.GetApparmorProfile(); {
	case p == "runtime/default":
		return spec.AppArmor{Kind: spec.AppArmorRuntimeDefault}
	case p == "unconfined":
		return spec.AppArmor{Kind: spec.AppArmorUnconfined}
	case strings.HasPrefix(p, "localhost/"):
		return spec.AppArmor{Kind: spec.AppArmorLocalhost, Profile: strings.TrimPrefix(p, "localhost/")}
	}
	return spec.AppArmor{}
}

func idMappings(in []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
	var out []specs.LinuxIDMapping
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}

// containerMounts translates the CRI mounts, shortest destination first so
// that a mount under another one is not hidden by it (containerd sorts the
// same way). SELinux relabelling is accepted and ignored: SELinux is off.
func containerMounts(in []*runtimeapi.Mount, images map[string]spec.Mount) ([]spec.Mount, error) {
	out := make([]spec.Mount, 0, len(in))
	for _, m := range in {
		dst := m.GetContainerPath()
		if !path.IsAbs(dst) {
			return nil, fmt.Errorf("%w: mount destination %q is not an absolute path", errdefs.ErrInvalidArgument, dst)
		}
		if m.GetImage().GetImage() != "" {
			im, ok := images[dst]
			if !ok {
				return nil, fmt.Errorf("%w: image volume on %s was not resolved", errdefs.ErrInternal, dst)
			}
			out = append(out, im)
			continue
		}
		if m.GetHostPath() == "" {
			return nil, fmt.Errorf("%w: mount on %s has no host path", errdefs.ErrInvalidArgument, dst)
		}
		sm := spec.Mount{
			Source:            m.GetHostPath(),
			Destination:       dst,
			ReadOnly:          m.GetReadonly(),
			RecursiveReadOnly: m.GetRecursiveReadOnly(),
			Options:           slices.Clone(m.GetMountOptions()),
			UIDMappings:       idMappings(m.GetUidMappings()),
			GIDMappings:       idMappings(m.GetGidMappings()),
		}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			sm.Propagation = spec.PropagationPrivate
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			sm.Propagation = spec.PropagationHostToContainer
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			sm.Propagation = spec.PropagationBidirectional
		default:
			return nil, fmt.Errorf("%w: unknown mount propagation %v on %s", errdefs.ErrInvalidArgument, m.GetPropagation(), dst)
		}
		if sm.RecursiveReadOnly && (!sm.ReadOnly || sm.Propagation != spec.PropagationPrivate) {
			return nil, fmt.Errorf("%w: recursive read-only mount on %s must be read-only with private propagation", errdefs.ErrInvalidArgument, dst)
		}
		out = append(out, sm)
	}
	slices.SortStableFunc(out, func(a, b spec.Mount) int {
		return mountDepth(a.Destination) - mountDepth(b.Destination)
	})
	return out, nil
}

func mountDepth(p string) int {
	p = path.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// resourcesFromCRI converts the CRI resources; zero values stay unset.
func resourcesFromCRI(r *runtimeapi.LinuxContainerResources) spec.Resources {
	if r == nil {
		return spec.Resources{}
	}
	out := spec.Resources{
		CPUShares:   uint64(max(r.GetCpuShares(), 0)),
		CPUQuota:    r.GetCpuQuota(),
		CPUPeriod:   uint64(max(r.GetCpuPeriod(), 0)),
		CpusetCpus:  r.GetCpusetCpus(),
		CpusetMems:  r.GetCpusetMems(),
		MemoryLimit: r.GetMemoryLimitInBytes(),
		Unified:     r.GetUnified(),
	}
	if s := r.GetMemorySwapLimitInBytes(); s != 0 {
		out.MemorySwap = &s
	}
	for _, h := range r.GetHugepageLimits() {
		out.HugepageLimits = append(out.HugepageLimits, spec.HugepageLimit{PageSize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	return out
}

// Annotations containerd's CRI plugin puts on containers; tools that read
// OCI specs (and NRI plugins) look for them.
const (
	annContainerType = "io.kubernetes.cri.container-type"
	annContainerName = "io.kubernetes.cri.container-name"
	annSandboxID     = "io.kubernetes.cri.sandbox-id"
	annSandboxName   = "io.kubernetes.cri.sandbox-name"
	annSandboxNS     = "io.kubernetes.cri.sandbox-namespace"
	annSandboxUID    = "io.kubernetes.cri.sandbox-uid"
	annImageName     = "io.kubernetes.cri.image-name"
)

func containerAnnotations(in specInput) map[string]string {
	out := map[string]string{}
	for k, v := range in.Config.GetAnnotations() {
		out[k] = v
	}
	md := in.Sandbox.GetMetadata()
	out[annContainerType] = "container"
	out[annContainerName] = in.Config.GetMetadata().GetName()
	out[annSandboxID] = in.SandboxID
	out[annSandboxName] = md.GetName()
	out[annSandboxNS] = md.GetNamespace()
	out[annSandboxUID] = md.GetUid()
	out[annImageName] = in.Config.GetImage().GetImage()
	return out
}

// stopSignal is the request's stop signal, else the image's, else SIGTERM.
func stopSignal(cfg *runtimeapi.ContainerConfig, img ocispec.ImageConfig) (syscall.Signal, error) {
	name := img.StopSignal
	if s := cfg.GetStopSignal(); s != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		name = strings.TrimPrefix(s.String(), "SIGNAL_")
	}
	if name == "" {
		return syscall.SIGTERM, nil
	}
	if n, err := strconv.Atoi(name); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name = strings.ToUpper(name)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("%w: unknown stop signal %q", errdefs.ErrInvalidArgument, name)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
