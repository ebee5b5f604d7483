package spec

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const defaultPathEnv = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// defaultMaskedPaths and defaultReadonlyPaths are containerd's (and
// Docker's) lists.
var (
	defaultMaskedPaths = []string{
		"/proc/acpi",
		"/proc/asound",
		"/proc/interrupts",
		"/proc/kcore",
		"/proc/keys",
		"/proc/latency_stats",
		"/proc/sched_debug",
		"/proc/scsi",
		"/proc/timer_list",
		"/proc/timer_stats",
		"/sys/devices/virtual/powercap",
		"/sys/firmware",
	}
	defaultReadonlyPaths = []string{
		"/proc/bus",
		"/proc/fs",
		"/proc/irq",
		"/proc/sys",
		"/proc/sysrq-trigger",
	}
)

// Generate builds the OCI runtime spec for c. It reads the rootfs'
// /etc/passwd and /etc/group when c.User names a user or group, and a
// Localhost seccomp profile from the host; nothing else touches the host.
func Generate(c Container) (*specs.Spec, error) {
	sp, err := generate(c)
	if err != nil {
		if c.ID != "" {
			return nil, fmt.Errorf("generate spec for container %s: %w", c.ID, err)
		}
		return nil, fmt.Errorf("generate spec: %w", err)
	}
	return sp, nil
}

func generate(c Container) (*specs.Spec, error) {
	if len(c.Args) == 0 {
		return nil, fmt.Errorf("no command to run: %w", errdefs.ErrInvalidArgument)
	}
	if !path.IsAbs(c.Rootfs) {
		return nil, fmt.Errorf("rootfs %q: not an absolute path: %w", c.Rootfs, errdefs.ErrInvalidArgument)
	}
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	if !path.IsAbs(cwd) {
		return nil, fmt.Errorf("working dir %q: not an absolute path: %w", cwd, errdefs.ErrInvalidArgument)
	}
	if err := validateSysctls(c.Sysctls, c.Namespaces); err != nil {
		return nil, err
	}

	sp := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: c.Rootfs, Readonly: c.ReadOnlyRootfs},
		Process: &specs.Process{
			Terminal:        c.Terminal,
			Args:            slices.Clone(c.Args),
			Env:             buildEnv(c),
			Cwd:             cwd,
			NoNewPrivileges: c.NoNewPrivileges,
			Rlimits:         slices.Clone(c.Rlimits),
		},
		Linux: &specs.Linux{
			CgroupsPath: c.CgroupsPath,
			Resources:   &specs.LinuxResources{},
		},
	}
	if len(c.Annotations) > 0 {
		sp.Annotations = maps.Clone(c.Annotations)
	}
	if len(c.Sysctls) > 0 {
		sp.Linux.Sysctl = maps.Clone(c.Sysctls)
	}

	user, err := buildUser(c.Rootfs, c.User)
	if err != nil {
		return nil, err
	}
	sp.Process.User = user

	caps, err := capabilitySet(c.Capabilities, c.Privileged)
	if err != nil {
		return nil, err
	}
	// No inheritable or ambient set: since CVE-2022-24769 containerd and
	// Docker leave them empty so that exec'd files do not gain capabilities.
	sp.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  caps,
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}

	if c.OOMScoreAdj != nil {
		score := max(*c.OOMScoreAdj, c.MinOOMScoreAdj)
		if score < -1000 || score > 1000 {
			return nil, fmt.Errorf("oom score adj %d: outside [-1000, 1000]: %w", *c.OOMScoreAdj, errdefs.ErrInvalidArgument)
		}
		sp.Process.OOMScoreAdj = &score
	}

	if err := applyNamespaces(sp, c); err != nil {
		return nil, err
	}

	mounts, rootProp, err := buildMounts(c)
	if err != nil {
		return nil, err
	}
	sp.Mounts = mounts
	sp.Linux.RootfsPropagation = rootProp

	if c.Privileged {
		sp.Linux.MaskedPaths = nil
		sp.Linux.ReadonlyPaths = nil
	} else {
		sp.Linux.MaskedPaths = slices.Clone(defaultMaskedPaths)
		if c.MaskedPaths != nil {
			sp.Linux.MaskedPaths = slices.Clone(c.MaskedPaths)
		}
		sp.Linux.ReadonlyPaths = slices.Clone(defaultReadonlyPaths)
		if c.ReadonlyPaths != nil {
			sp.Linux.ReadonlyPaths = slices.Clone(c.ReadonlyPaths)
		}
	}

	if err := applyDevices(sp, c); err != nil {
		return nil, err
	}
	if err := applyResources(sp.Linux.Resources, c.Resources); err != nil {
		return nil, err
	}

	// containerd never filters syscalls of a privileged container: it
	// could not do its job (mount, load modules) under the default profile.
	if !c.Privileged {
		sc, err := seccompFor(c.Seccomp, sp)
		if err != nil {
			return nil, err
		}
		sp.Linux.Seccomp = sc
	}
	profile, err := appArmorProfile(c.AppArmor, c.Privileged, AppArmorEnabled())
	if err != nil {
		return nil, err
	}
	sp.Process.ApparmorProfile = profile
	return sp, nil
}

// buildEnv applies containerd's env defaults: PATH when the image has none,
// HOSTNAME, and TERM for a terminal.
func buildEnv(c Container) []string {
	has := func(key string) bool {
		return slices.ContainsFunc(c.Env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	}
	var env []string
	if !has("PATH") {
		env = append(env, defaultPathEnv)
	}
	if c.Hostname != "" && !has("HOSTNAME") {
		env = append(env, "HOSTNAME="+c.Hostname)
	}
	if c.Terminal && !has("TERM") {
		env = append(env, "TERM=xterm")
	}
	return append(env, c.Env...)
}

// buildUser resolves the user and assembles the group list the kernel gets:
// the primary group first (so that it shows in `id -G` and in the CRI
// container status), then the image's memberships (Merge policy), then the
// requested supplemental groups.
func buildUser(rootfs string, u User) (specs.User, error) {
	if u.GroupsPolicy != GroupsMerge && u.GroupsPolicy != GroupsStrict {
		return specs.User{}, fmt.Errorf("unknown supplemental groups policy %d: %w", u.GroupsPolicy, errdefs.ErrInvalidArgument)
	}
	uid, gid, image, err := ResolveUser(rootfs, u.Spec, u.GroupsPolicy)
	if err != nil {
		return specs.User{}, err
	}
	if u.GID != nil {
		gid = *u.GID
	}
	named, err := groupIDs(rootfs, u.SupplementalGroupNames)
	if err != nil {
		return specs.User{}, err
	}
	groups := []uint32{gid}
	for _, g := range slices.Concat(image, u.SupplementalGroups, named) {
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	return specs.User{UID: uid, GID: gid, AdditionalGids: groups}, nil
}

func applyNamespaces(sp *specs.Spec, c Container) error {
	ns := c.Namespaces
	sp.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}}
	for _, n := range []struct {
		typ  specs.LinuxNamespaceType
		name string
		ns   Namespace
	}{
		{specs.NetworkNamespace, "network", ns.Network},
		{specs.IPCNamespace, "ipc", ns.IPC},
		{specs.UTSNamespace, "uts", ns.UTS},
		{specs.PIDNamespace, "pid", ns.PID},
		{specs.CgroupNamespace, "cgroup", ns.Cgroup},
	} {
		switch n.ns.Mode {
		case NamespacePrivate:
			if n.ns.Path != "" {
				return fmt.Errorf("%s namespace: a path is only valid when joining: %w", n.name, errdefs.ErrInvalidArgument)
			}
			sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: n.typ})
		case NamespaceJoin:
			if !path.IsAbs(n.ns.Path) {
				return fmt.Errorf("%s namespace: join needs an absolute path, got %q: %w", n.name, n.ns.Path, errdefs.ErrInvalidArgument)
			}
			sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: n.typ, Path: n.ns.Path})
		case NamespaceHost:
		default:
			return fmt.Errorf("%s namespace: unknown mode %d: %w", n.name, n.ns.Mode, errdefs.ErrInvalidArgument)
		}
	}
	// Setting the hostname inside a namespace shared with the pod or the
	// host would rename them; the sandbox sets it once.
	if ns.UTS.Mode == NamespacePrivate {
		sp.Hostname = c.Hostname
	}

	if u := ns.User; u != nil {
		if len(u.UIDMappings) == 0 || len(u.GIDMappings) == 0 {
			return fmt.Errorf("user namespace: uid and gid mappings are required: %w", errdefs.ErrInvalidArgument)
		}
		if u.Path != "" && !path.IsAbs(u.Path) {
			return fmt.Errorf("user namespace: join needs an absolute path, got %q: %w", u.Path, errdefs.ErrInvalidArgument)
		}
		sp.Linux.Namespaces = append(sp.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: u.Path})
		sp.Linux.UIDMappings = slices.Clone(u.UIDMappings)
		sp.Linux.GIDMappings = slices.Clone(u.GIDMappings)
	}
	return nil
}

func applyDevices(sp *specs.Spec, c Container) error {
	r := sp.Linux.Resources
	// Deny everything first; runc adds the standard safe nodes (null,
	// zero, full, tty, random, urandom, ptmx) after the spec's rules.
	r.Devices = []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if c.Privileged {
		r.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}
	for _, d := range c.Devices {
		if !path.IsAbs(d.Path) {
			return fmt.Errorf("device %q: container path not absolute: %w", d.Path, errdefs.ErrInvalidArgument)
		}
		if d.Type != "c" && d.Type != "b" && d.Type != "p" {
			return fmt.Errorf("device %s: type %q: want c, b or p: %w", d.Path, d.Type, errdefs.ErrInvalidArgument)
		}
		if err := validPermissions(d.Permissions); err != nil {
			return fmt.Errorf("device %s: %w", d.Path, err)
		}
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		mode := d.FileMode
		if mode == 0 {
			mode = 0o666
		}
		fm := fileMode(mode)
		uid, gid := d.UID, d.GID
		sp.Linux.Devices = append(sp.Linux.Devices, specs.LinuxDevice{
			Path: d.Path, Type: d.Type, Major: d.Major, Minor: d.Minor,
			FileMode: &fm, UID: &uid, GID: &gid,
		})
		if !c.Privileged {
			major, minor := d.Major, d.Minor
			r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: d.Type, Major: &major, Minor: &minor, Access: perms,
			})
		}
	}
	return nil
}

func applyResources(r *specs.LinuxResources, in Resources) error {
	if in.CPUShares != 0 || in.CPUQuota != 0 || in.CPUPeriod != 0 || in.CpusetCpus != "" || in.CpusetMems != "" {
		cpu := &specs.LinuxCPU{Cpus: in.CpusetCpus, Mems: in.CpusetMems}
		if in.CPUShares != 0 {
			v := in.CPUShares
			cpu.Shares = &v
		}
		if in.CPUQuota != 0 {
			v := in.CPUQuota
			cpu.Quota = &v
		}
		if in.CPUPeriod != 0 {
			v := in.CPUPeriod
			cpu.Period = &v
		}
		r.CPU = cpu
	}
	if in.MemoryLimit < 0 {
		return fmt.Errorf("memory limit %d: %w", in.MemoryLimit, errdefs.ErrInvalidArgument)
	}
	if in.MemoryLimit > 0 {
		limit := in.MemoryLimit
		// memory+swap equal to memory means no swap; containerd does the
		// same so that a limit is a limit.
		swap := limit
		if in.MemorySwap != nil {
			swap = *in.MemorySwap
			if swap != -1 && swap < limit {
				return fmt.Errorf("memory+swap limit %d below memory limit %d: %w", swap, limit, errdefs.ErrInvalidArgument)
			}
		}
		r.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &swap}
		if in.NoSwapLimit {
			if in.MemorySwap != nil {
				return fmt.Errorf("memory+swap limit on a host without swap accounting: %w", errdefs.ErrInvalidArgument)
			}
			r.Memory.Swap = nil
		}
	} else if in.MemorySwap != nil {
		return fmt.Errorf("memory+swap limit without a memory limit: %w", errdefs.ErrInvalidArgument)
	}
	if in.MemoryReservation < 0 {
		return fmt.Errorf("memory reservation %d: %w", in.MemoryReservation, errdefs.ErrInvalidArgument)
	}
	if in.MemoryReservation > 0 {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		v := in.MemoryReservation
		r.Memory.Reservation = &v
	}
	if in.MemorySwappiness != nil || in.DisableOOMKiller {
		if in.MemorySwappiness != nil && *in.MemorySwappiness > 100 {
			return fmt.Errorf("memory swappiness %d: want 0-100: %w", *in.MemorySwappiness, errdefs.ErrInvalidArgument)
		}
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		if in.MemorySwappiness != nil {
			v := *in.MemorySwappiness
			r.Memory.Swappiness = &v
		}
		if in.DisableOOMKiller {
			v := true
			r.Memory.DisableOOMKiller = &v
		}
	}
	if in.BlkioWeight != 0 {
		if in.BlkioWeight < 10 || in.BlkioWeight > 1000 {
			return fmt.Errorf("blkio weight %d: want 10-1000: %w", in.BlkioWeight, errdefs.ErrInvalidArgument)
		}
		v := in.BlkioWeight
		r.BlockIO = &specs.LinuxBlockIO{Weight: &v}
	}
	if in.PidsLimit != 0 {
		v := in.PidsLimit
		r.Pids = &specs.LinuxPids{Limit: &v}
	}
	for _, h := range in.HugepageLimits {
		if h.PageSize == "" {
			return fmt.Errorf("hugepage limit without a page size: %w", errdefs.ErrInvalidArgument)
		}
		r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	if len(in.Unified) > 0 {
		r.Unified = maps.Clone(in.Unified)
	}
	return nil
}

// appArmorProfile picks the profile name. Without AppArmor in the kernel
// every request is ignored, as containerd does, since there is nothing to
// enforce it.
func appArmorProfile(a AppArmor, privileged, enabled bool) (string, error) {
	switch a.Kind {
	case AppArmorUnset, AppArmorRuntimeDefault, AppArmorUnconfined, AppArmorLocalhost:
	default:
		return "", fmt.Errorf("unknown apparmor profile kind %d: %w", a.Kind, errdefs.ErrInvalidArgument)
	}
	if a.Kind == AppArmorLocalhost && a.Profile == "" {
		return "", fmt.Errorf("apparmor localhost profile without a name: %w", errdefs.ErrInvalidArgument)
	}
	if !enabled {
		return "", nil
	}
	switch {
	case a.Kind == AppArmorLocalhost:
		return a.Profile, nil
	case a.Kind == AppArmorUnconfined, privileged:
		return "unconfined", nil
	case a.Kind == AppArmorRuntimeDefault:
		return "", fmt.Errorf("apparmor runtime/default: berth has no default profile to load yet: %w", errdefs.ErrNotImplemented)
	}
	return "", nil
}
