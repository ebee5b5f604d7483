// Package runtime manages berthd's pod sandboxes and containers: it pins
// each pod's namespaces, writes its /etc files and /dev/shm, starts one
// berth-shim per container (see runtime/shim) from an OCI spec made by
// runtime/spec, records everything it acknowledges on disk before
// returning, and learns every exit from the shims without polling.
//
// The Manager is the one entry point. Front ends (cri/, dockerapi/) translate
// their requests into the plain values below; nothing here knows CRI, CNI or
// the image store: the caller passes the rootfs mounts and, after CNI, the
// pod's IPs.
//
// Crash safety: every record (one JSON file per sandbox and container under
// Config.Root) is written atomically (temp file, fsync, rename, fsync of the
// directory) before the call that changes it returns. Open after a crash
// reloads the records, reconnects to the shims that still run, reads the exit
// files of containers that ended meanwhile, and marks a container whose shim
// is gone without an exit file as Exited with exit code 255 and reason
// "Unknown" (nothing can tell how it ended).
//
// Limits worth knowing:
//   - Only the cgroupfs driver is implemented: Config.Validate refuses
//     "systemd" with ErrNotImplemented (no systemd runs where this is built
//     and tested, so that path could not be shown to work).
//   - In a pod with a user namespace the rootfs is idmapped (each overlay
//     lower dir, or a bind rootfs, through mount_setattr(MOUNT_ATTR_IDMAP);
//     the upper dir's root is chowned to the pod's root), which needs a
//     kernel and filesystem with idmapped mounts (UserNamespacesSupported).
//     Config.Root and its parents must be traversable by others (0711): the
//     container's runc reaches the rootfs as the mapped user.
//
// Errors are classified with github.com/containerd/errdefs: an unknown ID is
// ErrNotFound, a duplicate name or ID ErrAlreadyExists, a bad input
// ErrInvalidArgument, an operation the current state forbids (start of a
// running container, a container in a pod that is not ready)
// ErrFailedPrecondition, and a part not built yet ErrNotImplemented.
package runtime

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/spec"
)

// Cgroup drivers.
const (
	CgroupDriverCgroupfs = "cgroupfs"
	CgroupDriverSystemd  = "systemd"
)

// Config configures a Manager.
type Config struct {
	// Root holds the records and bundles (default /var/lib/berth/runtime).
	Root string
	// StateDir holds the shims' state directories and sockets, the
	// pinned namespaces and the compiled seccomp filters (default
	// /run/berth). Keep it short: a shim socket
	// is <StateDir>/c/<id[:12]>/shim.sock and must stay under 108 bytes.
	StateDir string
	// ShimBinary is the berth-shim executable. Required. berth-shim runs
	// berth-runc, its libcontainer helper, from the same directory.
	ShimBinary string
	// CgroupDriver is "cgroupfs" (the default). "systemd" is recognised but
	// not implemented yet: Validate refuses it with ErrNotImplemented.
	CgroupDriver string
	// OOMScoreAdjFloor is the lowest oom_score_adj a container gets; nil
	// means berthd's own (lowering it needs CAP_SYS_RESOURCE, which some
	// hosts deny even to root).
	OOMScoreAdjFloor *int
	// StrictResources fails a container that asks for a limit this host
	// cannot apply (hugepage limits without the hugetlb controller, a swap
	// limit without swap accounting, unified files on cgroup v1, a limit of
	// an unmounted controller). By default such limits are dropped with a
	// debug log, as Docker and containerd do: the kubelet sends hugepage
	// limits on every host.
	StrictResources bool
	// ReleaseNetwork, when set, is called by Open for each sandbox whose
	// creation a crash interrupted, before its network namespace is
	// unpinned: the caller's CNI DEL of a pod whose ADD may have begun
	// (berthd passes cni.Manager.Release). The bridge plugin finds the
	// addresses whose masquerade rules it must remove only inside the
	// namespace, so this cannot wait for a GC after Open.
	ReleaseNetwork func(ctx context.Context, sandboxID, netns string) error
}

// DefaultConfig returns the defaults; ShimBinary still has to be set.
func DefaultConfig() Config {
	return Config{Root: "/var/lib/berth/runtime", StateDir: "/run/berth"}
}

// maxStateDir keeps <StateDir>/c/<12 hex>/shim.sock below the 108-byte
// unix socket limit.
const maxStateDir = 107 - len("/c/123456789012/shim.sock")

// Validate checks c and fills the defaults of empty fields.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.Root == "" {
		c.Root = d.Root
	}
	if c.StateDir == "" {
		c.StateDir = d.StateDir
	}
	if c.CgroupDriver == "" {
		// cgroupfs also on systemd hosts, as containerd defaults to; the
		// kubelet learns the driver from the RuntimeConfig RPC.
		c.CgroupDriver = CgroupDriverCgroupfs
	}
	switch {
	case c.ShimBinary == "":
		return fmt.Errorf("runtime config: shim binary is required: %w", errdefs.ErrInvalidArgument)
	case !filepath.IsAbs(c.Root) || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("runtime config: root %q and state dir %q must be absolute: %w", c.Root, c.StateDir, errdefs.ErrInvalidArgument)
	case len(filepath.Clean(c.StateDir)) > maxStateDir:
		return fmt.Errorf("runtime config: state dir %q longer than %d bytes leaves no room for shim sockets: %w", c.StateDir, maxStateDir, errdefs.ErrInvalidArgument)
	case c.CgroupDriver == CgroupDriverSystemd:
		// The shim creates cgroups through libcontainer's cgroupfs manager
		// only; a systemd slice path given to it would be taken as a
		// directory name. Refuse rather than misplace containers.
		return fmt.Errorf("runtime config: the systemd cgroup driver is not implemented yet; use cgroup_driver = %q: %w", CgroupDriverCgroupfs, errdefs.ErrNotImplemented)
	case c.CgroupDriver != CgroupDriverCgroupfs:
		return fmt.Errorf("runtime config: unknown cgroup driver %q: %w", c.CgroupDriver, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Owners: the fronts that create sandboxes and containers. Each sees only
// its own (Manager.Owned).
const (
	OwnerCRI     = "cri"
	OwnerEngine  = "engine"
	OwnerBuilder = "builder"
)

// NamespaceMode says whose namespace a pod or container uses. The values
// match CRI's NamespaceMode.
type NamespaceMode int

const (
	// NamespacePod: the pod's own namespace, shared by its containers.
	NamespacePod NamespaceMode = iota
	// NamespaceContainer: each container has its own (PID only).
	NamespaceContainer
	// NamespaceNode: the host's namespace.
	NamespaceNode
	// NamespaceTarget: another container's PID namespace (see
	// ContainerConfig.PIDTarget), another sandbox's network or IPC
	// namespace (SandboxConfig.NetworkTarget, IPCTarget).
	NamespaceTarget
)

// SandboxNamespaces are a pod's namespace modes. UTS follows Network when
// the pod uses the host network, as in Kubernetes.
type SandboxNamespaces struct {
	Network NamespaceMode // Pod, Node or Target (SandboxConfig.NetworkTarget)
	PID     NamespaceMode // Pod, Container or Node
	IPC     NamespaceMode // Pod, Node or Target (SandboxConfig.IPCTarget)
	// UTS Node gives the host's UTS namespace (hostname) also on a network
	// of the pod's own (Docker's --uts host); Pod (the default) follows
	// Network.
	UTS NamespaceMode
}

// DNS is the pod's resolver configuration; a nil *DNS copies the host's
// /etc/resolv.conf.
type DNS struct {
	Servers  []string
	Searches []string
	Options  []string
}

// HostEntry is one extra /etc/hosts line.
type HostEntry struct {
	IP    string
	Names []string
}

// UserNamespace maps the pod's IDs: exactly one UID and one GID range, each
// mapping container ID 0 (as Kubernetes asks). The root filesystem is not
// remapped: files the image owns appear as the overflow ID (nobody) inside.
type UserNamespace struct {
	UIDMappings []specs.LinuxIDMapping
	GIDMappings []specs.LinuxIDMapping
}

// SandboxConfig describes a pod sandbox.
type SandboxConfig struct {
	// Owner is the front the sandbox belongs to; a scoped Manager sets it
	// (empty on the unscoped one means OwnerCRI).
	Owner string
	// ID is 64 lower-case hex digits; empty generates one.
	ID string
	// Name, Namespace, UID and Attempt are the pod's metadata; together
	// they must be unique among the owner's sandboxes.
	Name      string
	Namespace string
	UID       string
	Attempt   uint32
	// Hostname is set in the pod's UTS namespace and /etc/hostname; empty
	// means the node's hostname, as in containerd. At most 64 bytes.
	Hostname string
	// LogDirectory is where the containers' log files go (the caller joins
	// it with each container's relative log path).
	LogDirectory string
	DNS          *DNS
	Hosts        []HostEntry
	Labels       map[string]string
	Annotations  map[string]string
	// CgroupParent is the pod's cgroup (cgroupfs path, or a systemd slice
	// with the systemd driver); containers go below it.
	CgroupParent string
	Namespaces   SandboxNamespaces
	// NetworkTarget is the sandbox whose network namespace this one joins
	// (Namespaces.Network NamespaceTarget: Docker's --network
	// container:<name>). The sandbox gets a UTS namespace of its own; the
	// target keeps owning the network namespace. A target on the host's
	// network gives the host's.
	NetworkTarget string
	// IPCTarget is the sandbox whose IPC namespace and /dev/shm this one
	// shares (Namespaces.IPC NamespaceTarget: Docker's --ipc
	// container:<name>); the target keeps owning them. A target on the
	// host's IPC gives the host's.
	IPCTarget string
	// ShmSize is the size in bytes of the pod's /dev/shm (a pod with its
	// own IPC namespace); 0 means 64 MiB, as in containerd and Docker.
	ShmSize int64
	// Sysctls are namespaced sysctls applied in the pod's namespaces:
	// net.* in the network namespace, kernel.shm*, kernel.msg*, kernel.sem
	// and fs.mqueue.* in the IPC namespace.
	Sysctls    map[string]string
	Privileged bool
	// UserNS, when set, gives the pod a user namespace with these mappings;
	// its network, IPC, UTS (and PID) namespaces are owned by it, and its
	// containers run in it.
	UserNS *UserNamespace
	// RuntimeHandler is recorded and reported; only "" is served.
	RuntimeHandler string
	// Network, if set, attaches a pod with its own network namespace
	// during the creation (see SandboxNetwork); the IPs it returns are the
	// sandbox's. It is not recorded.
	Network SandboxNetwork `json:"-"`
	// Admit, if set, is called once the sandbox is made (namespaces,
	// network, files, pause holder), before it becomes visible to Sandbox
	// and ListSandboxes and before a container may join it; an error
	// undoes the whole creation. NRI's RunPodSandbox runs here. It is not
	// recorded.
	Admit func(ctx context.Context, sb *Sandbox) error `json:"-"`
}

// SandboxState is a pod's state.
type SandboxState int

const (
	SandboxReady SandboxState = iota
	SandboxNotReady
)

func (s SandboxState) String() string {
	if s == SandboxReady {
		return "ready"
	}
	return "notready"
}

// Sandbox is a snapshot of a pod sandbox; changing it changes nothing.
type Sandbox struct {
	ID        string
	Config    SandboxConfig
	State     SandboxState
	CreatedAt time.Time
	// NetNSPath is the pinned network namespace, empty for host network.
	NetNSPath string
	// IPCNSPath and UTSNSPath are the pinned namespaces, empty when the
	// host's are used.
	IPCNSPath string
	UTSNSPath string
	// UserNSPath is the pinned user namespace, empty without one.
	UserNSPath string
	// IPs are the pod's addresses, set by SetSandboxNetwork; the first is
	// the primary one.
	IPs []string
	// PausePid is the PID of the process holding the pod's PID namespace
	// (PID mode Pod) or its user namespace; 0 when there is none, or once
	// the pod is stopped.
	PausePid int
	// The pod's files, bind-mounted into each container.
	HostsPath      string
	ResolvConfPath string
	HostnamePath   string
	// ShmPath is the pod's /dev/shm tmpfs; empty with host IPC.
	ShmPath string
}

// Mount is one mount of a container's root filesystem, as the image store
// returns it (typically one overlay mount).
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// ContainerConfig describes a container.
type ContainerConfig struct {
	// Owner is the front the container belongs to: its sandbox's, or for a
	// standalone container the scoped Manager's (see SandboxConfig.Owner).
	Owner string
	// ID is 64 lower-case hex digits; empty generates one.
	ID string
	// SandboxID is the pod the container belongs to; it must be ready.
	// Empty creates a standalone container whose namespaces are exactly
	// those of Spec.Namespaces.
	SandboxID string
	// Name and Attempt must be unique within the pod.
	Name    string
	Attempt uint32
	// Image is the image as the user named it, ImageRef its resolved
	// reference (repo@digest) and ImageID the image's ID; recorded only.
	Image    string
	ImageRef string
	ImageID  string
	// Rootfs are mounted in order at <bundle>/rootfs; one mount of the
	// image store's overlay is the usual case. Required.
	Rootfs []Mount
	// Spec is the container's part of the OCI spec. The Manager sets its
	// ID, Rootfs, namespaces (from the pod), CgroupsPath (below the pod's
	// CgroupParent unless set), Files and Shm (the pod's), Hostname and
	// MinOOMScoreAdj; the rest is the caller's.
	Spec spec.Container
	// PID overrides the pod's PID mode for this container: NamespacePod
	// (the default) joins the pod's PID namespace when it has one,
	// NamespaceContainer gives a private one, NamespaceTarget joins the
	// one of container PIDTarget.
	PID       NamespaceMode
	PIDTarget string
	// LogPath is the absolute log file the shim writes the container's
	// output to, as Log says; empty discards the output.
	LogPath string
	// Log is the log file's format and rotation. The zero value is the
	// kubelet's CRI format, which the shim never rotates: the kubelet
	// does, and calls ReopenContainerLog.
	Log       LogConfig
	Stdin     bool
	StdinOnce bool
	TTY       bool
	// StopSignal is sent by StopContainer; 0 means SIGTERM.
	StopSignal  syscall.Signal
	Labels      map[string]string
	Annotations map[string]string
	// Adjust, if set, is called with the container's OCI spec once it is
	// generated, before the bundle is written and while the container is
	// not yet visible to Container and ListContainers; it may change the
	// spec (an NRI plugin's adjustment). The runtime then takes back what
	// it keeps of the spec: the cgroup path, the user, and the resources,
	// fitted to the host as the caller's are. An error undoes the
	// creation. It is not recorded.
	Adjust func(ctx context.Context, sp *specs.Spec) error `json:"-"`
}

// Log file formats (see runtime/logfile).
const (
	LogFormatCRI   = ""
	LogFormatJSON  = "json-file"
	LogFormatLocal = "local"
)

// LogConfig is how the shim writes a container's log file: format,
// rotation (as dockerd rotates: before a write, once the file holds
// MaxSize bytes; MaxFiles files kept, 1 truncating instead) and whether a
// slow disk may block the container.
type LogConfig struct {
	// Format is LogFormatCRI, LogFormatJSON (docker's json-file) or
	// LogFormatLocal (Berth's binary records).
	Format string
	// MaxSize in bytes; 0 never rotates.
	MaxSize  int64
	MaxFiles int
	// Compress gzips rotated files (in the background).
	Compress bool
	// Attrs go into every json-file record ("attrs": labels, env, tag).
	Attrs map[string]string
	// NonBlocking queues output in memory, at most MaxBuffer bytes
	// (0: 1 MB), and drops what does not fit rather than block the
	// container on the disk (docker's mode=non-blocking).
	NonBlocking bool
	MaxBuffer   int64
}

func (l LogConfig) validate() error {
	switch l.Format {
	case LogFormatCRI, LogFormatJSON, LogFormatLocal:
	default:
		return fmt.Errorf("log format %q is not %q, %q or CRI's: %w", l.Format, LogFormatJSON, LogFormatLocal, errdefs.ErrInvalidArgument)
	}
	if l.MaxSize < 0 || l.MaxFiles < 0 || l.MaxBuffer < 0 {
		return fmt.Errorf("log max size, max files and max buffer must not be negative: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// ContainerState is a container's state.
type ContainerState int

const (
	ContainerCreated ContainerState = iota
	ContainerRunning
	ContainerExited
	ContainerUnknown
)

func (s ContainerState) String() string {
	switch s {
	case ContainerCreated:
		return "created"
	case ContainerRunning:
		return "running"
	case ContainerExited:
		return "exited"
	}
	return "unknown"
}

// Exit reasons.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	// ReasonUnknown: the shim disappeared without recording an exit (the
	// exit code is then 255).
	ReasonUnknown = "Unknown"
)

// Container is a snapshot of a container; changing it changes nothing.
type Container struct {
	ID         string
	SandboxID  string
	Config     ContainerConfig
	State      ContainerState
	CreatedAt  time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	ExitCode   int32
	// Reason is "Completed" (exit code 0), "Error", "OOMKilled" or
	// "Unknown", set once the container exited.
	Reason  string
	Message string
	// Pid is the host PID of the container's init while it runs.
	Pid int
	// Paused is set while the running container is frozen
	// (PauseContainer).
	Paused bool
	// Bundle is the OCI bundle directory (config.json, rootfs).
	Bundle string
	// UpperDir is the writable layer's directory when the rootfs is an
	// overlay, for disk usage.
	UpperDir string
	// User is who the container's process runs as: Spec.User resolved at
	// creation against the image's /etc/passwd and /etc/group; nil until
	// then.
	User *User `json:",omitempty"`
}

// User is a resolved process user.
type User struct {
	UID            uint32
	GID            uint32
	AdditionalGIDs []uint32 `json:",omitempty"`
}

// Size is a terminal size.
type Size struct {
	Width  uint16
	Height uint16
}

// Streams are the caller's ends of a process's stdio; nil members are not
// connected.
type Streams struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Resize carries terminal size changes until closed.
	Resize <-chan Size
	// Attached, when set, is called once the container's monitor accepted
	// the streams (see Manager.Attach).
	Attached func()
}

// ExecOptions describe a process run in a container. The process is the
// container's own (environment, user, working directory, capabilities)
// with these changes.
type ExecOptions struct {
	Cmd []string
	TTY bool
	// Env entries (KEY=value) replace the container's of the same key or
	// add to them.
	Env []string
	// User runs the process as "user[:group]" (names or numbers) resolved
	// against the container's /etc/passwd and /etc/group, with the groups
	// /etc/group lists the user in; empty keeps the container's user.
	User string
	// WorkDir replaces the container's working directory.
	WorkDir string
	// Capabilities, when not nil, replace the container's (bounding,
	// effective, permitted): Docker's exec --privileged passes them all.
	Capabilities []string
	// Started, when set, is called with the process's host PID once it
	// runs, before any output is copied.
	Started func(pid int)
	Streams
}

// MaxExecSyncOutput caps ExecSync's stdout and stderr each; the rest is
// discarded, as CRI asks.
const MaxExecSyncOutput = 16 << 20

// ContainerStats are a container's resource figures.
type ContainerStats struct {
	ID        string
	Timestamp time.Time
	// CPUUsage is the cumulative CPU time in nanoseconds.
	CPUUsage uint64
	// Memory in bytes.
	MemoryWorkingSet uint64
	MemoryUsage      uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	// The figures below are those Docker's stats report besides.

	// CPUUser and CPUSystem split CPUUsage (ns); CPUPeriods,
	// CPUThrottledPeriods and CPUThrottledTime (ns) are the CFS
	// bandwidth counters.
	CPUUser             uint64
	CPUSystem           uint64
	CPUPeriods          uint64
	CPUThrottledPeriods uint64
	CPUThrottledTime    uint64
	// MemoryLimit is the cgroup's limit as read back (a huge number when
	// unlimited); MemoryMaxUsage the peak (0 where the kernel keeps none).
	MemoryLimit    uint64
	MemoryMaxUsage uint64
	MemoryFailcnt  uint64
	// MemoryStat is the cgroup's memory.stat as the kernel writes it: v1
	// has total_inactive_file, v2 inactive_file.
	MemoryStat map[string]uint64
	// PidsLimit is 0 when unlimited.
	PidsLimit uint64
	// IOServiceBytes and IOServiced are block I/O by device and
	// operation ("Read", "Write", ...).
	IOServiceBytes []BlkioEntry
	IOServiced     []BlkioEntry
	// Processes are the host PIDs in the container's cgroup.
	Processes []int
	// WritableLayerBytes and WritableLayerInodes measure the writable
	// layer (the overlay's upper directory); ContainerCgroupStats leaves
	// them at zero.
	WritableLayerBytes  uint64
	WritableLayerInodes uint64
	WritableLayerPath   string
}

// BlkioEntry is one device's counter for one operation.
type BlkioEntry struct {
	Major uint64
	Minor uint64
	Op    string
	Value uint64
}

// InterfaceStats are one network interface's counters.
type InterfaceStats struct {
	Name      string
	RxBytes   uint64
	RxErrors  uint64
	TxBytes   uint64
	TxErrors  uint64
	RxPackets uint64
	RxDropped uint64
	TxPackets uint64
	TxDropped uint64
}

// SandboxStats are a pod's figures: the sum of its containers' plus its
// network.
type SandboxStats struct {
	ID               string
	Timestamp        time.Time
	CPUUsage         uint64
	MemoryWorkingSet uint64
	MemoryUsage      uint64
	MemoryRSS        uint64
	PageFaults       uint64
	MajorPageFaults  uint64
	Pids             uint64
	// Network are the pod network namespace's interfaces except lo; nil
	// with host networking.
	Network    []InterfaceStats
	Containers []ContainerStats
}

// EventType is what happened to a container.
type EventType int

const (
	EventCreated EventType = iota
	EventStarted
	EventStopped
	EventDeleted
)

func (t EventType) String() string {
	return [...]string{"created", "started", "stopped", "deleted"}[t]
}

// Event reports a container's change of state.
type Event struct {
	ContainerID string
	SandboxID   string
	Owner       string
	Type        EventType
	Time        time.Time
}
