package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Container describes one container in plain values. The zero value of each
// field means "the containerd default" unless its comment says otherwise.
type Container struct {
	// ID is the container's ID; only used in error messages.
	ID string

	// Args is the resolved command line (entrypoint + cmd). Required.
	Args []string
	// Env is the environment as KEY=VALUE, image env first and the request's
	// env after it (later entries win). PATH defaults to the usual
	// /usr/local/sbin:... when absent, HOSTNAME is added from Hostname and
	// TERM=xterm when Terminal is set, unless Env has them.
	Env []string
	// WorkingDir defaults to "/".
	WorkingDir string
	// User says who the process runs as; the zero value is root (0:0).
	User User
	// Terminal allocates a pseudo terminal for the process.
	Terminal bool

	// Hostname is set in the spec only when the container gets its own UTS
	// namespace (a pod's containers join the pod's, where the sandbox already
	// set it); it always becomes the HOSTNAME env variable.
	Hostname string

	// Rootfs is the absolute host path of the prepared root filesystem
	// (for example the overlay mount). Required.
	Rootfs string
	// ReadOnlyRootfs mounts the root filesystem read-only; the /etc/hosts,
	// /etc/resolv.conf and /etc/hostname bind mounts follow it.
	ReadOnlyRootfs bool

	// Mounts are the caller's mounts (volumes, image volumes, ...). A mount
	// whose destination equals a default mount's replaces it; a mount on /dev
	// replaces every default mount under /dev.
	Mounts []Mount
	// Files are the per-pod /etc files bind-mounted into the container.
	Files Files
	// Shm describes /dev/shm.
	Shm Shm

	// Privileged gives every capability, every host device (the caller
	// passes them in Devices, see HostDevices), no seccomp, no masked or
	// read-only paths, and read-write /sys and /sys/fs/cgroup.
	Privileged bool
	// Capabilities adjusts the default set; ignored when Privileged.
	Capabilities Capabilities
	// NoNewPrivileges sets the no_new_privs bit on the process.
	NoNewPrivileges bool
	// MaskedPaths and ReadonlyPaths replace containerd's defaults when not
	// nil; an empty non-nil slice means none. Both are empty when Privileged.
	MaskedPaths   []string
	ReadonlyPaths []string
	// Sysctls are namespaced kernel parameters; each must belong to a
	// namespace that the container does not share with the host.
	Sysctls map[string]string
	// Seccomp selects the seccomp profile; the zero value is unconfined, as
	// Kubernetes asks when a pod says nothing. Ignored when Privileged.
	Seccomp Seccomp
	// AppArmor selects the AppArmor profile. It is accepted and ignored on a
	// kernel without AppArmor (see AppArmorEnabled).
	AppArmor AppArmor

	// Devices are device nodes created in the container and allowed in its
	// device cgroup (see DevicesFromPath and HostDevices).
	Devices []Device

	// OOMScoreAdj is the process's oom_score_adj; nil leaves it unset
	// (inherited from the shim).
	OOMScoreAdj *int
	// MinOOMScoreAdj is the lowest OOMScoreAdj that is applied; lower values
	// are raised to it. Lowering the score below the daemon's own needs
	// CAP_SYS_RESOURCE, which some hosts do not grant even to root, and runc
	// then fails with an opaque "can't get final child's PID from pipe"; set
	// it to CurrentOOMScoreAdj() (containerd's restrict_oom_score_adj). The
	// zero value therefore clamps negative scores to 0.
	MinOOMScoreAdj int

	// Resources are the cgroup limits.
	Resources Resources
	// CgroupsPath is passed through to the spec (cgroupfs path, or
	// "slice:prefix:name" for the systemd driver).
	CgroupsPath string

	// Namespaces says which namespaces are new, joined or the host's.
	Namespaces Namespaces

	// Annotations are copied into the spec.
	Annotations map[string]string
	// Rlimits are the process rlimits; none by default, so the process
	// inherits the shim's, as under containerd's CRI plugin.
	Rlimits []specs.POSIXRlimit
}

// User says who the container's process runs as.
type User struct {
	// Spec is "user[:group]", each part a name or a number, as in an image
	// config's User or Docker's --user. Names are looked up in the rootfs'
	// /etc/passwd and /etc/group. Empty means root.
	Spec string
	// GID, when set, replaces the primary group (CRI run_as_group).
	GID *uint32
	// SupplementalGroups are added to the process's groups (CRI
	// supplemental_groups, Docker --group-add).
	SupplementalGroups []uint32
	// SupplementalGroupNames are more supplemental groups by name, looked
	// up in the rootfs' /etc/group (Docker --group-add with a name).
	SupplementalGroupNames []string
	// GroupsPolicy says whether the image's /etc/group memberships of the
	// user are merged into the supplemental groups.
	GroupsPolicy SupplementalGroupsPolicy
}

// SupplementalGroupsPolicy is the CRI supplemental groups policy.
type SupplementalGroupsPolicy int

const (
	// GroupsMerge adds the groups the image's /etc/group lists the user in.
	GroupsMerge SupplementalGroupsPolicy = iota
	// GroupsStrict uses only the primary group and SupplementalGroups.
	GroupsStrict
)

// Propagation is a mount's propagation mode.
type Propagation int

const (
	// PropagationPrivate ("rprivate"): no events either way. The default.
	PropagationPrivate Propagation = iota
	// PropagationHostToContainer ("rslave"): host mounts appear inside.
	PropagationHostToContainer
	// PropagationBidirectional ("rshared"): mounts propagate both ways.
	PropagationBidirectional
)

// Mount is one mount in the container.
type Mount struct {
	// Source is a host path for bind mounts, or the filesystem source.
	Source string
	// Destination is the absolute path inside the container. Required.
	Destination string
	// Type defaults to "bind".
	Type string
	// Options are extra mount options, for example "nosuid". Read-only
	// and propagation options here are dropped: ReadOnly, RecursiveReadOnly
	// and Propagation decide them, so the two cannot disagree.
	Options []string
	// Propagation applies to bind mounts.
	Propagation Propagation
	// NonRecursivePropagation applies Propagation to the top mount only
	// ("private", "slave", "shared": Docker's modes without the r).
	NonRecursivePropagation bool
	// ReadOnly mounts read-only (only the top mount for a bind mount).
	ReadOnly bool
	// RecursiveReadOnly makes every submount read-only too ("rro", needs
	// kernel 5.12); it requires ReadOnly and private propagation, as in CRI.
	RecursiveReadOnly bool
	// UIDMappings and GIDMappings make an idmapped mount.
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
}

// Files are host files bind-mounted over the container's /etc files; an
// empty path leaves the image's file alone.
type Files struct {
	HostsPath      string // -> /etc/hosts
	ResolvConfPath string // -> /etc/resolv.conf
	HostnamePath   string // -> /etc/hostname
}

// Shm describes the container's /dev/shm.
type Shm struct {
	// Source, when set, is bind-mounted on /dev/shm: the pod's shm tmpfs
	// (containers of a pod share IPC) or the host's /dev/shm (host IPC).
	Source string
	// Size is the size in bytes of a private tmpfs when Source is empty;
	// 0 means 64 MiB.
	Size int64
}

// Capabilities adjusts the default capability set.
type Capabilities struct {
	// Add and Drop are capability names, with or without "CAP_", in any
	// case; "ALL" in Add starts from every capability, "ALL" in Drop from
	// none, as in containerd.
	Add  []string
	Drop []string
	// All is what "ALL" and Privileged mean: the daemon's own capabilities
	// (CurrentCapabilities), since a container cannot be given more than its
	// creator holds. Empty means every capability known to this build.
	All []string
}

// SeccompKind selects a seccomp profile.
type SeccompKind int

const (
	// SeccompUnconfined applies no filter.
	SeccompUnconfined SeccompKind = iota
	// SeccompRuntimeDefault applies moby's default profile.
	SeccompRuntimeDefault
	// SeccompLocalhost loads a JSON profile (Docker's format) from
	// LocalhostPath on the host.
	SeccompLocalhost
)

// Seccomp selects the container's seccomp profile.
type Seccomp struct {
	Kind          SeccompKind
	LocalhostPath string
}

// AppArmorKind selects an AppArmor profile.
type AppArmorKind int

const (
	// AppArmorUnset leaves the choice to the runtime (no profile).
	AppArmorUnset AppArmorKind = iota
	// AppArmorRuntimeDefault asks for the runtime's default profile.
	AppArmorRuntimeDefault
	// AppArmorUnconfined runs unconfined.
	AppArmorUnconfined
	// AppArmorLocalhost uses Profile, which must be loaded on the host.
	AppArmorLocalhost
)

// AppArmor selects the container's AppArmor profile.
type AppArmor struct {
	Kind    AppArmorKind
	Profile string
}

// Device is a device node to create in the container and allow in its
// device cgroup.
type Device struct {
	// Path is the path inside the container.
	Path string
	// Type is "c", "b" or "p".
	Type         string
	Major, Minor int64
	FileMode     uint32 // permission bits; 0 means 0666
	UID, GID     uint32
	// Permissions is the cgroup access, a combination of "r", "w", "m";
	// empty means "rwm".
	Permissions string
}

// Resources are the container's cgroup limits; zero values leave a limit
// unset.
type Resources struct {
	CPUShares  uint64
	CPUQuota   int64
	CPUPeriod  uint64
	CpusetCpus string
	CpusetMems string
	// MemoryLimit in bytes.
	MemoryLimit int64
	// MemorySwap is the memory+swap limit; nil with a MemoryLimit means
	// equal to it (no swap), as containerd does; -1 is unlimited.
	MemorySwap *int64
	// NoSwapLimit leaves the memory+swap limit unset even with a
	// MemoryLimit: the host has no swap accounting (cgroup v1 without
	// memory.memsw.*), where runc fails on writing it.
	NoSwapLimit bool
	PidsLimit   int64
	// MemoryReservation is the soft memory limit in bytes (Docker's
	// --memory-reservation).
	MemoryReservation int64
	// MemorySwappiness (0-100) is the cgroup v1 memory.swappiness; nil
	// leaves the kernel's.
	MemorySwappiness *uint64
	// DisableOOMKiller turns the OOM killer off for the cgroup (v1 only):
	// a task over the limit waits instead.
	DisableOOMKiller bool
	// BlkioWeight (10-1000) is the block I/O weight; 0 leaves it.
	BlkioWeight uint16
	// HugepageLimits maps a page size ("2MB", "1GB") to a limit in bytes.
	HugepageLimits []HugepageLimit
	// Unified are cgroup v2 files to write (CRI "unified"). runc refuses
	// them on a cgroup v1 host, so pass them only on v2.
	Unified map[string]string
}

// HugepageLimit limits one huge page size.
type HugepageLimit struct {
	PageSize string
	Limit    uint64
}

// NamespaceMode says where a namespace comes from.
type NamespaceMode int

const (
	// NamespacePrivate creates a new namespace for the container.
	NamespacePrivate NamespaceMode = iota
	// NamespaceJoin joins the namespace pinned at Path (the pod's).
	NamespaceJoin
	// NamespaceHost shares the host's namespace.
	NamespaceHost
)

// Namespace is one namespace choice.
type Namespace struct {
	Mode NamespaceMode
	// Path is the pinned namespace file (for example /run/berth/netns/x or
	// /proc/<pause pid>/ns/pid); required with NamespaceJoin.
	Path string
}

// Namespaces are the container's namespaces. The mount namespace is always
// private.
type Namespaces struct {
	Network, IPC, UTS, PID Namespace
	// Cgroup: containerd's CRI plugin gives containers a private cgroup
	// namespace only on cgroup v2 hosts; callers on v1 pass NamespaceHost.
	Cgroup Namespace
	// User, when not nil, runs the container in a user namespace.
	User *UserNamespace
}

// UserNamespace is a user namespace: new with the given mappings, or joined
// at Path (the pod's), in which case the mappings describe it.
type UserNamespace struct {
	Path        string
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
}
