// Package engine is Berth's standalone container engine: Docker's
// containers (IDs, unique names, the stored create config, restart count
// and policies, the "stopped by the user" flag, --rm, attach, wait, events)
// on Berth's runtime and image store. dockerapi serves it over Docker's
// REST API; daemon/ wires it.
//
// Each container is a one-container sandbox of the runtime owned by
// runtime.OwnerEngine, whose ID is the container's: the sandbox pins the
// container's network, IPC and UTS namespaces and holds its /etc/hosts,
// /etc/resolv.conf, /etc/hostname and /dev/shm. The runtime records state,
// exit codes and timestamps (it learns exits even while berthd is down);
// the engine records what Docker adds (name, config, mounts, restart count,
// policy bookkeeping) in <Root>/containers/<id>/container.json, written
// atomically and durably before a call returns.
//
// Crash safety: a creation writes its record, marked pending, before it
// makes anything, and a removal marks it removing first; Open undoes a
// pending creation and finishes a removal, so kill -9 at any moment loses
// no acknowledged container or name and leaks nothing. Exits that happened
// while berthd was down are handled at Open as if they had just happened
// (die event, restart policy with Docker's backoff, --rm).
//
// Errors carry containerd/errdefs classes and Docker's message texts
// ("No such container: x", the name conflict naming the holder's ID):
// dockerapi maps the classes to status codes.
package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// Config configures an Engine.
type Config struct {
	// Root holds the containers' records and log files
	// (<Root>/containers/<id>/). Required, absolute.
	Root string
	// StopTimeout is the default grace period of a stop (Docker's 10 s).
	StopTimeout time.Duration
	// AllCapabilities is what --privileged and --cap-add ALL give: the
	// daemon's own capabilities (spec.CurrentCapabilities).
	AllCapabilities []string
	// InitBinary is mounted as /sbin/docker-init in containers run with
	// --init (berth-shim, which behaves as a tini-compatible init under
	// that name). Empty refuses --init.
	InitBinary string
}

// DefaultConfig returns the defaults; Root must still be set.
func DefaultConfig() Config {
	return Config{StopTimeout: 10 * time.Second}
}

// Validate checks c and fills the defaults of zero fields.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.StopTimeout == 0 {
		c.StopTimeout = d.StopTimeout
	}
	if !filepath.IsAbs(c.Root) {
		return fmt.Errorf("engine config: root %q is not absolute: %w", c.Root, errdefs.ErrInvalidArgument)
	}
	if c.StopTimeout < 0 {
		return fmt.Errorf("engine config: negative stop timeout %s: %w", c.StopTimeout, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Images is what the engine needs of the image store (*imagestore.Store).
type Images interface {
	Get(ctx context.Context, nameOrID string) (*imagestore.Image, error)
	Prepare(ctx context.Context, id, image string) ([]imagestore.Mount, error)
	View(ctx context.Context, id, image string) ([]imagestore.Mount, error)
	RemoveSnapshot(ctx context.Context, id string) error
}

// Publisher receives the engine's events (an *events.Bus).
type Publisher interface {
	Publish(m events.Message)
}

// Options are an Engine's parts.
type Options struct {
	Config Config
	// Runtime is the runtime view the engine owns:
	// rt.Owned(runtime.OwnerEngine).
	Runtime *runtime.Manager
	Images  Images
	Volumes *volume.Store
	Events  Publisher
	// Logs is the log drivers: how each container's log is written, read
	// and shipped. Required.
	Logs *logs.Manager
	// Network is the standalone networks (default bridge, user-defined,
	// host, none); nil leaves every container with a loopback interface
	// only (tests that need no network).
	Network *network.Manager
}

// Engine manages standalone containers. It is safe for concurrent use.
type Engine struct {
	cfg     Config
	rt      *runtime.Manager
	images  Images
	volumes *volume.Store
	events  Publisher
	net     *network.Manager
	logs    *logs.Manager

	mu         sync.Mutex
	containers map[string]*ctr
	// names maps each name (without "/") to its container's ID,
	// reservations of creations under way included.
	names map[string]string
	// execs are the exec instances, health the healthcheck monitors
	// (exec.go, health.go).
	execs  execs
	health healthChecks

	// closed ends the exit handler and the restart timers.
	closed    chan struct{}
	closeOnce sync.Once
	bg        sync.WaitGroup
	// bgCtx carries the logger for background work (exits, restarts).
	bgCtx context.Context
}

// ctr is one container.
type ctr struct {
	// op serialises the lifecycle operations of the container (create's
	// end, start, stop, restart, kill's bookkeeping, removal).
	op sync.Mutex
	// rec is guarded by Engine.mu.
	rec record
	// changed is closed and replaced at every change of state; waiters
	// watch it. Guarded by Engine.mu.
	changed chan struct{}
	// exits counts the exits handled since berthd started.
	exits int
	// restarting is set while a policy restart waits out its backoff;
	// cancelRestart stops that wait. Guarded by Engine.mu.
	restarting    bool
	cancelRestart func()
	// policyStart is set while a policy restart's start runs (a new shim,
	// the networks): dockerd still says restarting then.
	policyStart bool
	// removed is set once the container is gone.
	removed bool
	// stopping is set while a stop or kill by the user is under way: the
	// exit it causes is not restarted by the policy.
	stopping bool
	// attach are the attach sessions waiting for the next run's streams.
	attach []*attachment
	// startedAt is when the current run started, for the backoff reset.
	startedAt time.Time
	// exitCode is the last handled exit's code (for waiters of a removal).
	exitCode int
	// starting is closed once the latest start published its event.
	starting chan struct{}
}

// Open loads the records under cfg.Root, finishes what a crash
// interrupted (pending creations are undone, removals completed), handles
// the exits that happened while no engine ran and starts watching exits.
// ctx's logger is used for background work.
func Open(ctx context.Context, o Options) (*Engine, error) {
	cfg := o.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Runtime == nil || o.Images == nil || o.Volumes == nil || o.Events == nil || o.Logs == nil {
		return nil, fmt.Errorf("open engine: runtime, images, volumes, events and logs are required: %w", errdefs.ErrInvalidArgument)
	}
	e := &Engine{
		cfg: cfg, rt: o.Runtime, images: o.Images, volumes: o.Volumes, events: o.Events, net: o.Network, logs: o.Logs,
		containers: map[string]*ctr{},
		names:      map[string]string{},
		closed:     make(chan struct{}),
		bgCtx:      context.WithoutCancel(ctx),
	}
	if err := os.MkdirAll(e.containersDir(), 0o711); err != nil {
		return nil, fmt.Errorf("open engine: %w", err)
	}
	// Exits from now on; those of the load below are found by comparing
	// records.
	rtEvents := e.rt.Subscribe(e.bgCtx)
	if err := e.load(ctx); err != nil {
		return nil, err
	}
	e.bg.Add(1)
	go e.watchExits(rtEvents)
	e.reconcile(ctx)
	return e, nil
}

// Close stops the engine's background work; containers keep running.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() { close(e.closed) })
	e.mu.Lock()
	for _, c := range e.containers {
		if c.cancelRestart != nil {
			c.cancelRestart()
		}
	}
	e.mu.Unlock()
	e.stopAllHealth()
	e.bg.Wait()
	return nil
}

func (e *Engine) containersDir() string { return filepath.Join(e.cfg.Root, "containers") }

func (e *Engine) containerDir(id string) string { return filepath.Join(e.containersDir(), id) }

// load reads every record. A record that does not decode is data loss and
// fails Open; a directory without a record is a creation that died before
// its first write and is removed.
func (e *Engine) load(ctx context.Context) error {
	ents, err := os.ReadDir(e.containersDir())
	if err != nil {
		return fmt.Errorf("open engine: %w", err)
	}
	for _, ent := range ents {
		id := ent.Name()
		if !validID(id) {
			continue
		}
		rec, err := readRecord(e.containerDir(id))
		if errors.Is(err, os.ErrNotExist) {
			_ = os.RemoveAll(e.containerDir(id))
			continue
		}
		if err != nil {
			return fmt.Errorf("open engine: %w", err)
		}
		c := &ctr{rec: rec, changed: make(chan struct{})}
		e.containers[id] = c
		if rec.Name != "" {
			e.names[rec.Name] = id
		}
	}
	return nil
}

// reconcile finishes interrupted creations and removals, re-takes the
// volume references and handles exits that the engine has not seen.
func (e *Engine) reconcile(ctx context.Context) {
	log := logctx.From(ctx)
	e.mu.Lock()
	all := make([]*ctr, 0, len(e.containers))
	for _, c := range e.containers {
		all = append(all, c)
	}
	e.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i].rec.Created.Before(all[j].rec.Created) })
	for _, c := range all {
		rec := c.rec
		switch {
		case rec.Pending:
			if err := e.undoCreate(ctx, c); err != nil {
				log.WarnContext(ctx, "undo half-created container", "id", rec.ID, "error", err)
			} else {
				log.InfoContext(ctx, "undid a container creation interrupted by a crash", "id", rec.ID, "name", rec.Name)
			}
			continue
		case rec.Removing:
			if err := e.finishRemove(ctx, c, removeOptions{volumes: rec.RemoveVolumes}); err != nil {
				log.WarnContext(ctx, "finish interrupted removal", "id", rec.ID, "error", err)
			}
			continue
		}
		for _, m := range rec.Mounts {
			if m.Type == "volume" {
				e.volumes.Ref(m.Name, rec.ID)
			}
		}
		rc, err := e.rt.Container(rec.ID)
		if err != nil {
			// The runtime lost it (its record was damaged): nothing can
			// run it again, but the user still sees and removes it.
			log.WarnContext(ctx, "container has no runtime state", "id", rec.ID, "error", err)
			continue
		}
		if err := e.logs.Start(logContainer(e.containerDir(rec.ID), rec)); err != nil {
			log.WarnContext(ctx, "resume log forwarding", "id", rec.ID, "error", err)
		}
		if rc.State != runtime.ContainerRunning {
			e.logs.Stop(rec.ID)
		}
		if rc.State == runtime.ContainerExited && rc.FinishedAt.After(rec.HandledExit) {
			// Exited while berthd was down (or before its exit was
			// handled): as if it had just happened.
			e.handleExit(e.bgCtx, c, *rc, exitOptions{atStartup: true})
		}
		if rc.State == runtime.ContainerRunning {
			e.startHealth(c, rc.StartedAt)
		}
	}
}

// lookup finds a container by full ID, name (with or without "/") or
// unique ID prefix, as Docker does.
func (e *Engine) lookup(ref string) (*ctr, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.lookupLocked(ref)
}

func (e *Engine) lookupLocked(ref string) (*ctr, error) {
	if ref == "" {
		return nil, errdefs.ErrNotFound.WithMessage("No such container: ")
	}
	visible := func(c *ctr) bool { return c != nil && !c.rec.Pending && !c.removed }
	if c := e.containers[ref]; visible(c) {
		return c, nil
	}
	if id, ok := e.names[strings.TrimPrefix(ref, "/")]; ok {
		if c := e.containers[id]; visible(c) {
			return c, nil
		}
	}
	var found *ctr
	for id, c := range e.containers {
		if strings.HasPrefix(id, ref) && visible(c) {
			if found != nil {
				return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("multiple IDs found with provided prefix: %s", ref))
			}
			found = c
		}
	}
	if found == nil {
		return nil, noSuchContainer(ref)
	}
	return found, nil
}

func noSuchContainer(ref string) error {
	return errdefs.ErrNotFound.WithMessage("No such container: " + ref)
}

// notify wakes the waiters of c; called with e.mu held.
func (c *ctr) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// save writes c's record durably.
func (e *Engine) save(c *ctr) error {
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	return writeRecord(e.containerDir(rec.ID), rec)
}

// note writes c's record atomically but without syncing it: for a
// creation's pending record, which only a later Open reads to undo what it
// lists. A kill -9 leaves it in the page cache; a power loss may lose it,
// as the runtime's own pending records (see runtime/record.go), and the
// snapshot sweep at start-up then frees the writable layer.
func (e *Engine) note(c *ctr) error {
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	return noteRecord(e.containerDir(rec.ID), rec)
}

// update changes c's record under e.mu and saves it.
func (e *Engine) update(c *ctr, fn func(r *record)) error {
	e.mu.Lock()
	fn(&c.rec)
	rec := c.rec.clone()
	e.mu.Unlock()
	return writeRecord(e.containerDir(rec.ID), rec)
}

// log publishes a container event with Docker's attributes: the image,
// the name and the labels, plus extra.
func (e *Engine) log(c *ctr, action events.Action, extra map[string]string) {
	e.mu.Lock()
	attrs := map[string]string{"name": c.rec.Name, "image": c.rec.Config.Image}
	for k, v := range c.rec.Config.Labels {
		attrs[k] = v
	}
	id := c.rec.ID
	e.mu.Unlock()
	for k, v := range extra {
		attrs[k] = v
	}
	e.events.Publish(events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: id, Attributes: attrs}})
}

// allCaps is what "ALL" and --privileged give.
func (e *Engine) allCaps() []string {
	if len(e.cfg.AllCapabilities) > 0 {
		return e.cfg.AllCapabilities
	}
	caps, err := spec.CurrentCapabilities()
	if err != nil {
		return nil
	}
	return caps
}

// IDs returns the IDs of the engine's containers (for the networks'
// start-up GC).
func (e *Engine) IDs() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.containers))
	for id, c := range e.containers {
		if !c.removed {
			out = append(out, id)
		}
	}
	return out
}

// logContainer is what the log drivers know of a container.
func logContainer(dir string, r record) logs.Container {
	return logs.Container{
		ID: r.ID, Name: r.Name, Dir: dir, Created: r.Created,
		ImageID: r.ImageID, ImageName: r.Config.Image,
		Path: r.Path, Args: r.Args, Env: r.Config.Env, Labels: r.Config.Labels,
		TTY: r.Config.Tty, LogConfig: r.HostConfig.LogConfig,
	}
}

// HoldsSnapshot says whether a snapshot follows the engine's naming (a
// container's ID, or an image mount's <ID>-im<n>) and whether a container
// of the engine uses it, for the daemon's start-up sweep of snapshots no
// front holds.
func (e *Engine) HoldsSnapshot(name string) (mine, held bool) {
	id := name
	if i := strings.Index(name, "-im"); i >= 0 {
		if n := name[i+3:]; n == "" || strings.Trim(n, "0123456789") != "" {
			return false, false
		}
		id = name[:i]
	}
	if !validID(id) {
		return false, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	c, ok := e.containers[id]
	return true, ok && !c.removed
}
