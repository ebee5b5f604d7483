package cri

import (
	"context"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// RuntimeService implements the CRI RuntimeService: it translates CRI
// requests into calls on the runtime manager (sandboxes, containers), the
// pod network (CNI) and the image store (rootfs snapshots), and back.
type RuntimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	opts RuntimeOptions

	// podCIDR is the last UpdateRuntimeConfig's; nothing uses it yet (CNI
	// configs carry their own ranges), but a verbose Status shows it.
	mu      sync.Mutex
	podCIDR string

	cpuRates cpuRates
	pods     podLocks
	// nri relays the lifecycle to NRI plugins; nil without NRI (set by
	// Start).
	nri *nriRelay

	// detached holds the pods whose CNI DEL succeeded since berthd
	// started: a later stop or remove skips it (a DEL of the whole chain
	// again cost 30 ms of each RemovePodSandbox). After a restart the
	// first stop or remove runs it again, which is harmless.
	detached sync.Map
}

// RuntimeOptions configure the RuntimeService. Each part of the runtime it
// uses is a field of its own, typed by the small interface that part's RPCs
// need; berthd sets them all to its *runtime.Manager.
type RuntimeOptions struct {
	// Version is Berth's version, reported as runtime_version.
	Version string
	// Config is reported as JSON under "config" by a verbose Status.
	Config any
	// Pods makes, stops, removes and finds sandboxes.
	Pods podRuntime
	// Containers makes, starts, stops, removes and finds containers.
	Containers containerRuntime
	// Processes runs commands in containers and changes running ones.
	Processes processRuntime
	// Stats reads the figures and events of pods and containers.
	Stats statsRuntime
	// Health says whether containers can run at all; Status reports the
	// runtime not ready, with the reason, when it cannot. Required.
	Health health
	// CgroupDriver is the runtime's cgroup driver ("cgroupfs" or
	// "systemd"), reported by the RuntimeConfig RPC.
	CgroupDriver string
	// Network attaches pods to the network (CNI); nil serves host-network
	// pods only and reports the network not ready.
	Network Network
	// Images provides images and rootfs snapshots (an *imagestore.Store).
	Images Snapshotter
	// Streams serves exec/attach/port-forward sessions; nil answers those
	// RPCs with Unimplemented.
	Streams *StreamServer
	// AllCapabilities is what "ALL" and privileged mean: the daemon's own
	// capabilities (spec.CurrentCapabilities); nil means every known one.
	AllCapabilities []string
	// Features says which optional runtime features really work here; they
	// are advertised in Status only when true.
	Features Features
	// NRI, when set, serves NRI plugins (see Start); nil disables NRI.
	NRI *NRIConfig
}

// Features are optional abilities advertised in Status.
type Features struct {
	RecursiveReadOnlyMounts bool
	UserNamespaces          bool
}

// podRuntime is the runtime's sandbox part.
type podRuntime interface {
	CreateSandbox(ctx context.Context, c runtime.SandboxConfig) (*runtime.Sandbox, error)
	SetSandboxNetwork(ctx context.Context, id string, ips []string) error
	StopSandbox(ctx context.Context, id string, timeout time.Duration) error
	RemoveSandbox(ctx context.Context, id string) error
	Sandbox(id string) (*runtime.Sandbox, error)
	ListSandboxes() []*runtime.Sandbox
}

// containerRuntime is the runtime's container lifecycle part.
type containerRuntime interface {
	CreateContainer(ctx context.Context, c runtime.ContainerConfig) (*runtime.Container, error)
	StartContainer(ctx context.Context, id string) error
	StopContainer(ctx context.Context, id string, timeout time.Duration) error
	RemoveContainer(ctx context.Context, id string) error
	Container(id string) (*runtime.Container, error)
	ListContainers() []*runtime.Container
	// ContainerSpec is the OCI spec the container was created with.
	ContainerSpec(id string) (*specs.Spec, error)
}

// processRuntime runs commands in containers and changes running ones.
type processRuntime interface {
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error)
	UpdateContainerResources(ctx context.Context, id string, r spec.Resources) error
	ReopenContainerLog(ctx context.Context, id string) error
}

// statsRuntime reads figures and events.
type statsRuntime interface {
	ContainerStats(ctx context.Context, id string) (*runtime.ContainerStats, error)
	SandboxStats(ctx context.Context, id string) (*runtime.SandboxStats, error)
	SandboxMetrics(ctx context.Context, id string) (*runtime.SandboxMetrics, error)
	Subscribe(ctx context.Context) <-chan runtime.Event
}

// health is the runtime's readiness: nil, or why no container can start
// (its shim or berth-runc missing).
type health interface {
	Ready() error
}

// Snapshotter is what CreateContainer and RemoveContainer need of the image
// store.
type Snapshotter interface {
	Get(ctx context.Context, nameOrID string) (*imagestore.Image, error)
	Prepare(ctx context.Context, id, image string) ([]imagestore.Mount, error)
	View(ctx context.Context, id, image string) ([]imagestore.Mount, error)
	RemoveSnapshot(ctx context.Context, id string) error
}

// PortMapping is one pod port mapping as CNI's portMappings capability
// takes it.
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	// Protocol is "tcp", "udp" or "sctp".
	Protocol string
	HostIP   string
}

// PodNetwork is what the network needs to attach or detach one pod.
type PodNetwork struct {
	// ID is the sandbox ID (CNI's container ID).
	ID string
	// NetNS is the pod's pinned network namespace.
	NetNS        string
	PodName      string
	PodNamespace string
	PodUID       string
	PortMappings []PortMapping
}

// Network attaches pods to the node's network (CNI).
type Network interface {
	// Ready reports whether pods can be attached, and if not why.
	Ready(ctx context.Context) (ok bool, reason string)
	// Attach runs CNI ADD and returns the pod's IPs, primary first; on
	// error it has undone what it did.
	Attach(ctx context.Context, p PodNetwork) ([]string, error)
	// Detach runs CNI DEL; detaching a pod that is not attached succeeds.
	Detach(ctx context.Context, p PodNetwork) error
}

var _ runtimeapi.RuntimeServiceServer = (*RuntimeService)(nil)

// NewRuntimeService returns the CRI RuntimeService.
func NewRuntimeService(opts RuntimeOptions) *RuntimeService {
	return &RuntimeService{opts: opts}
}
