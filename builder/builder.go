// Package builder builds images from Dockerfiles on Berth's own parts: the
// Dockerfile is parsed with BuildKit's frontend packages (parser,
// instructions, shell), each RUN runs as a container of the runtime (owner
// "builder") on an overlay snapshot of the previous step, and each step's
// changes (the snapshot's upper dir, whiteouts included) become a layer of
// the image store directly. No second store, no build daemon.
//
// The contract:
//   - Build reads a build context (a tar, gzip or bzip2 compressed or not)
//     into an index of its entries, file contents spooled to one file
//     under Config.Root/tmp/<build>/ (nothing is written anywhere else but
//     the image store, the runtime's records and the per-build tmpfs under
//     Config.StateDir; the context is written out there as a tree only
//     when a RUN bind-mounts it), builds the stages the target needs,
//     concurrently where they do not depend on each other, and records the
//     image with all its tags in one transaction.
//   - The cache: every step has a key (its parent's key, the instruction
//     after expansion, and for COPY/ADD the checksums of the files copied);
//     a step whose key is recorded is not run again. Records survive
//     restarts (they live in the image store's metadata) and Prune removes
//     them.
//   - Secrets are held in memory and written, only for the RUN that mounts
//     one, to a tmpfs that Build mounts under Config.StateDir for the build
//     (never under the root). They never enter a layer, the config, the
//     history, a cache key or the output: RUN output has every secret value
//     masked.
//   - Crash safety: the image is recorded last, tags included, in one
//     transaction; Sweep, run at start-up before any build, removes what a
//     killed berthd left (build containers, snapshots, mounts, temp dirs).
//
// Docker's classic builder is the model for the API (POST /build) and the
// output; BuildKit's Dockerfile frontend is the model for the semantics
// (ARG scoping, history, heredocs, RUN mounts, COPY rules).
package builder

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// Network modes of RUN steps.
const (
	// NetworkHost runs RUN steps in the host's network namespace.
	NetworkHost = "host"
	// NetworkNone gives each RUN step a network namespace of its own with
	// only a loopback interface.
	NetworkNone = "none"
	// NetworkBridge puts the RUN steps of a build in one network namespace
	// on the standalone containers' default bridge, as docker's classic
	// builder does (needs a Network).
	NetworkBridge = "bridge"
	// NetworkDefault is the configured default (Config.DefaultNetwork).
	NetworkDefault = "default"
)

// Config configures a Builder.
type Config struct {
	// Root holds the builder's persistent data (cache mounts) and the
	// temporary dirs of running builds; usually <berth root>/builder.
	Root string
	// StateDir holds each running build's tmpfs (secrets, RUN output,
	// /etc files); usually <berth state>/builder. It must not be on the
	// same path as Root.
	StateDir string
	// DefaultNetwork is the network of RUN steps when a build asks for
	// "default" or nothing: NetworkBridge (the default, as docker's
	// classic builder: a RUN does not see the host's loopback services),
	// NetworkHost or NetworkNone. The bridge needs a Network (New).
	DefaultNetwork string
}

// Network is what bridge builds need of the standalone containers'
// networks (daemon adapts engine/network to it).
type Network interface {
	// Attach puts the pinned network namespace netns of build sandbox id
	// on the default bridge, with extraHosts ("name:ip"), and writes its
	// hosts and resolv.conf files.
	Attach(ctx context.Context, id, hostname, netns, hostsPath, resolvPath string, extraHosts []string) error
	// Release detaches id and forgets it; an unknown id is fine.
	Release(ctx context.Context, id string) error
}

// Validate checks c and fills defaults.
func (c *Config) Validate() error {
	if c.DefaultNetwork == "" {
		c.DefaultNetwork = NetworkBridge
	}
	switch {
	case !filepath.IsAbs(c.Root) || !filepath.IsAbs(c.StateDir):
		return fmt.Errorf("builder config: root %q and state dir %q must be absolute: %w", c.Root, c.StateDir, errdefs.ErrInvalidArgument)
	case c.DefaultNetwork != NetworkHost && c.DefaultNetwork != NetworkNone && c.DefaultNetwork != NetworkBridge:
		return fmt.Errorf("builder config: default network %q: want %q, %q or %q: %w", c.DefaultNetwork, NetworkHost, NetworkNone, NetworkBridge, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Builder runs builds. It is safe for concurrent use: builds share only the
// image store and the cache.
type Builder struct {
	cfg    Config
	images *imagestore.Store
	rt     *runtime.Manager
	// net is nil where there is no bridge for builds.
	net Network

	cacheMounts *cacheMounts

	mu      sync.Mutex
	running map[string]bool
	// snaps are the snapshots running builds hold.
	snaps map[string]bool
}

// New returns a Builder on the image store and the runtime (it takes the
// runtime's builder-owned view itself); net, when not nil, serves bridge
// builds. Call Sweep before the first build.
func New(cfg Config, images *imagestore.Store, rt *runtime.Manager, net Network) (*Builder, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.DefaultNetwork == NetworkBridge && net == nil {
		return nil, fmt.Errorf("builder config: default network bridge: no bridge network here (choose %q or %q): %w", NetworkHost, NetworkNone, errdefs.ErrInvalidArgument)
	}
	for _, d := range []string{cfg.Root, filepath.Join(cfg.Root, "tmp"), cfg.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open builder: %w", err)
		}
	}
	cm, err := newCacheMounts(filepath.Join(cfg.Root, "cache"))
	if err != nil {
		return nil, fmt.Errorf("open builder: %w", err)
	}
	return &Builder{
		cfg:         cfg,
		images:      images,
		rt:          rt.Owned(runtime.OwnerBuilder),
		net:         net,
		cacheMounts: cm,
		running:     map[string]bool{},
		snaps:       map[string]bool{},
	}, nil
}

// HoldsSnapshot says whether a snapshot is the builder's (SnapshotPrefix)
// and whether a running build uses it: start-up reconciliation across the
// fronts (daemon) removes those that are the builder's and unused.
func (b *Builder) HoldsSnapshot(name string) (mine, held bool) {
	if !strings.HasPrefix(name, SnapshotPrefix) {
		return false, false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return true, b.snaps[name]
}

// newSnapshot names a snapshot for a build and marks it held until done is
// called.
func (b *Builder) newSnapshot() (string, func()) {
	id := SnapshotPrefix + newID()
	b.mu.Lock()
	b.snaps[id] = true
	b.mu.Unlock()
	return id, func() {
		b.mu.Lock()
		delete(b.snaps, id)
		b.mu.Unlock()
	}
}

// Options describe one build.
type Options struct {
	// Context is the build context: a tar archive, possibly gzip or bzip2
	// compressed.
	Context io.Reader
	// Dockerfile is the Dockerfile's path inside the context; empty means
	// "Dockerfile".
	Dockerfile string
	// Tags name the image ("name[:tag]"); none leaves it untagged.
	Tags []string
	// BuildArgs are --build-arg values; a nil value is an argument the
	// client named without a value, which counts as not given.
	BuildArgs map[string]*string
	// Labels are added to the image config.
	Labels map[string]string
	// Target is the stage to build; empty means the last one.
	Target string
	// NoCache runs every step; Pull pulls every base image, even present
	// ones.
	NoCache bool
	Pull    bool
	// Network is the RUN steps' network: "default", "host", "none" or
	// "bridge".
	Network string
	// ExtraHosts are "name:ip" lines added to the RUN steps' /etc/hosts.
	ExtraHosts []string
	// ShmSize is the size of the RUN steps' /dev/shm in bytes; 0 is 64 MiB.
	ShmSize int64
	// Platform is the target platform "os[/arch[/variant]]"; empty is the
	// host's. Only the host's architecture can run.
	Platform string
	// Resources limit each RUN step (memory, CPU).
	Resources Resources
	// Auth holds registry credentials by registry host (for base images).
	Auth map[string]imagestore.Auth
	// Secrets are the build secrets by id. They are kept in memory only.
	Secrets map[string][]byte
	// Progress receives the build's events; nil discards them. It may be
	// called from several goroutines, one at a time.
	Progress func(Event)
	// Warnings are shown ("[Warning] ...") once the context is read.
	Warnings []string
}

// Resources limit a RUN step.
type Resources struct {
	Memory     int64
	MemorySwap int64
	CPUShares  int64
	CPUQuota   int64
	CPUPeriod  int64
	CpusetCpus string
	CpusetMems string
}

// Result is a finished build.
type Result struct {
	Image *imagestore.Image
	// Tags are the normalized tags the image got.
	Tags []string
}

// EventKind says what an Event reports.
type EventKind int

const (
	// EventStep: a step starts (Step, Total, Stage, Instruction).
	EventStep EventKind = iota
	// EventCached: the step's result came from the cache (ID).
	EventCached
	// EventRunning: a RUN step's container was created (ID).
	EventRunning
	// EventOutput: Text is output of a RUN step (secrets masked).
	EventOutput
	// EventRemoved: a RUN step's container was removed (ID).
	EventRemoved
	// EventStepDone: the step finished; ID is the resulting state's ID
	// (the config digest an image of that state would have).
	EventStepDone
	// EventInfo: Text is a line for the user (a warning, a pull status).
	EventInfo
	// EventPull: Pull is progress of a base image pull.
	EventPull
)

// Event is one piece of a build's progress.
type Event struct {
	Kind        EventKind
	Step, Total int
	// Stage is the stage's name, or its index.
	Stage       string
	Instruction string
	ID          string
	Text        string
	Pull        imagestore.Progress
}

func newID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// Build runs one build. Errors about the Dockerfile or the context carry
// errdefs.ErrInvalidArgument and name the Dockerfile line.
func (b *Builder) Build(ctx context.Context, opts Options) (*Result, error) {
	id := newID()
	b.mu.Lock()
	b.running[id] = true
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.running, id)
		b.mu.Unlock()
	}()
	tm := steps.Start(ctx, "build")
	defer tm.Log("build", id)
	bd, err := b.newBuild(ctx, id, opts)
	tm.Done("context")
	if err != nil {
		return nil, err
	}
	defer func() {
		bd.close(ctx)
		tm.Done("close")
	}()
	bd.tm = tm
	return bd.run(ctx)
}
