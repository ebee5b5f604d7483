package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/adaptation"
	nriapi "github.com/containerd/nri/pkg/api"
	nrilog "github.com/containerd/nri/pkg/log"
	nrigen "github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// NRIConfig configures NRI, the Node Resource Interface: plugins (resource
// managers, device injectors, policy agents) that connect to a socket,
// observe the CRI's pods and containers, adjust containers as they are
// created and update running ones, as with containerd and CRI-O.
type NRIConfig struct {
	// SocketPath is where plugins connect; NRI's default is
	// /var/run/nri/nri.sock, which stock plugins dial.
	SocketPath string
	// PluginPath holds plugins berthd starts itself (NRI's
	// /opt/nri/plugins) and PluginConfigPath their configs
	// (/etc/nri/conf.d); a directory that does not exist holds none.
	PluginPath       string
	PluginConfigPath string
	// RegistrationTimeout and RequestTimeout bound a plugin's
	// registration and each request to it (a hook, a synchronization); a
	// plugin that exceeds one is disconnected and the pod or container
	// goes on without it. Zero means NRI's defaults (5 s and 2 s).
	RegistrationTimeout time.Duration
	RequestTimeout      time.Duration
}

// nriPhase is how far plugins were told a pod or container went, so that
// each event reaches them once (containerd keeps the same).
type nriPhase int

const (
	nriCreated nriPhase = iota + 1
	nriRunning
	nriStopped
)

// nriRelay relays the CRI's pod and container lifecycle to NRI plugins
// through NRI's adaptation and applies what they ask: the adjustment of a
// container being created, resource updates of others, evictions. A nil
// *nriRelay relays nothing.
type nriRelay struct {
	a   *adaptation.Adaptation
	s   *RuntimeService
	log *slog.Logger

	// mu serialises the relaying of events (the adaptation would anyway)
	// and guards phase.
	mu    sync.Mutex
	phase map[string]nriPhase

	stop context.CancelFunc
	done chan struct{}
}

// Start starts NRI when RuntimeOptions.NRI asks for it: plugins under the
// plugin path are started and synchronized, the socket listens, and
// container exits are relayed from then on. Call it once, before serving;
// Close stops it.
func (s *RuntimeService) Start(ctx context.Context) error {
	if s.opts.NRI == nil {
		return nil
	}
	r, err := startNRI(ctx, *s.opts.NRI, s)
	if err != nil {
		return err
	}
	s.nri = r
	return nil
}

// Close stops NRI: plugins are disconnected (those berthd started are
// killed) and the socket is removed.
func (s *RuntimeService) Close() {
	if s.nri == nil {
		return
	}
	s.nri.stop()
	<-s.nri.done
	s.nri.a.Stop()
}

func startNRI(ctx context.Context, cfg NRIConfig, s *RuntimeService) (*nriRelay, error) {
	if cfg.SocketPath == "" {
		return nil, fmt.Errorf("start nri: %w: no socket path", errdefs.ErrInvalidArgument)
	}
	// NRI removes whatever is at its socket path: refuse to take the
	// socket of a runtime that is serving on it.
	if conn, err := net.DialTimeout("unix", cfg.SocketPath, time.Second); err == nil {
		conn.Close()
		return nil, fmt.Errorf("start nri on %s: %w: another runtime is serving NRI there", cfg.SocketPath, errdefs.ErrAlreadyExists)
	} else if fi, serr := os.Lstat(cfg.SocketPath); serr == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("start nri on %s: %w: a file that is not a socket is in the way", cfg.SocketPath, errdefs.ErrAlreadyExists)
	} else if serr == nil && !errors.Is(err, syscall.ECONNREFUSED) {
		return nil, fmt.Errorf("start nri on %s: check for a live runtime: %w", cfg.SocketPath, err)
	}
	log := logctx.From(ctx).With("component", "nri")
	// NRI logs through one process-wide logger, which its goroutines read
	// at any time: it is set once and forwards to the latest NRI's log.
	nriLog.Store(log)
	nriLogOnce.Do(func() { nrilog.Set(nriLogger{}) })
	// The timeouts are process-wide in NRI too; berthd runs one.
	if cfg.RegistrationTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(cfg.RegistrationTimeout)
	}
	if cfg.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(cfg.RequestTimeout)
	}
	r := &nriRelay{s: s, log: log, phase: map[string]nriPhase{}, done: make(chan struct{})}
	opts := []adaptation.Option{adaptation.WithSocketPath(cfg.SocketPath)}
	if cfg.PluginPath != "" {
		opts = append(opts, adaptation.WithPluginPath(cfg.PluginPath))
	}
	if cfg.PluginConfigPath != "" {
		opts = append(opts, adaptation.WithPluginConfigPath(cfg.PluginConfigPath))
	}
	a, err := adaptation.New("berth", s.opts.Version, r.synchronize, r.updateFromPlugin, opts...)
	if err != nil {
		return nil, fmt.Errorf("start nri: %w", err)
	}
	r.a = a
	// What plugins were told before berthd restarted: every pod and
	// container is where the runtime says it is.
	r.seed()
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r.stop = stop
	events := s.opts.Stats.Subscribe(wctx)
	if err := a.Start(); err != nil {
		stop()
		return nil, fmt.Errorf("start nri on %s: %w", cfg.SocketPath, err)
	}
	go r.relayExits(wctx, events)
	log.InfoContext(ctx, "serving NRI", "socket", cfg.SocketPath)
	return r, nil
}

// seed sets the phase of every pod and container from the runtime.
func (r *nriRelay) seed() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, sb := range r.s.opts.Pods.ListSandboxes() {
		r.phase[sb.ID] = nriStopped
		if sb.State == runtime.SandboxReady {
			r.phase[sb.ID] = nriRunning
		}
	}
	for _, c := range r.s.opts.Containers.ListContainers() {
		r.phase[c.ID] = containerPhase(c.State)
	}
}

func containerPhase(s runtime.ContainerState) nriPhase {
	switch s {
	case runtime.ContainerCreated:
		return nriCreated
	case runtime.ContainerRunning:
		return nriRunning
	}
	return nriStopped
}

// relayExits tells plugins about containers that stopped on their own
// (exited, killed, OOM): a StopContainer RPC is not their only way out.
func (r *nriRelay) relayExits(ctx context.Context, events <-chan runtime.Event) {
	defer close(r.done)
	for e := range events {
		if e.Type == runtime.EventStopped {
			r.stopContainer(ctx, e.ContainerID)
		}
	}
}

// synchronize is NRI's SyncFn: a plugin that connects is told every pod
// and every container that has not exited. Creations and removals block
// plugin synchronization (blockSync) until the runtime lists them, so none
// is missed in between.
func (r *nriRelay) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var pods []*nriapi.PodSandbox
	for _, sb := range r.s.opts.Pods.ListSandboxes() {
		pods = append(pods, nriPod(sb))
	}
	var ctrs []*nriapi.Container
	for _, c := range r.s.opts.Containers.ListContainers() {
		if c.State == runtime.ContainerExited {
			continue
		}
		ctrs = append(ctrs, r.container(c))
		r.phase[c.ID] = containerPhase(c.State)
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	r.apply(ctx, "synchronize", updates, nil)
	return nil
}

// updateFromPlugin is NRI's UpdateFn: a plugin changes running
// containers' resources on its own initiative. It returns the updates that
// failed.
func (r *nriRelay) updateFromPlugin(ctx context.Context, updates []*nriapi.ContainerUpdate) ([]*nriapi.ContainerUpdate, error) {
	return r.update(ctx, updates)
}

// update applies updates to containers' resources, each on what the
// container has, and returns those that failed without IgnoreFailure.
func (r *nriRelay) update(ctx context.Context, updates []*nriapi.ContainerUpdate) ([]*nriapi.ContainerUpdate, error) {
	var failed []*nriapi.ContainerUpdate
	var errs []error
	for _, u := range updates {
		c, err := r.s.opts.Containers.Container(u.GetContainerId())
		if err == nil {
			res := mergeNRIResources(c.Config.Spec.Resources, u.GetLinux().GetResources())
			err = r.s.opts.Processes.UpdateContainerResources(ctx, c.ID, res)
		}
		if err != nil && !u.GetIgnoreFailure() {
			failed = append(failed, u)
			errs = append(errs, fmt.Errorf("update container %s for nri: %w", u.GetContainerId(), err))
		}
	}
	return failed, errors.Join(errs...)
}

// apply carries out the updates and evictions a hook's answer asks for;
// like containerd, a failure is logged, not returned: the event that
// caused it already happened.
func (r *nriRelay) apply(ctx context.Context, after string, updates []*nriapi.ContainerUpdate, evict []*nriapi.ContainerEviction) {
	for _, e := range evict {
		if err := r.s.opts.Containers.StopContainer(ctx, e.GetContainerId(), 0); err != nil && !errdefs.IsNotFound(err) {
			r.log.WarnContext(ctx, "evict a container for an nri plugin", "after", after, "id", e.GetContainerId(), "reason", e.GetReason(), "error", err)
		}
	}
	if _, err := r.update(ctx, updates); err != nil {
		r.log.WarnContext(ctx, "update containers for an nri plugin", "after", after, "error", err)
	}
}

// blockSync keeps plugins from synchronizing until the returned func
// runs: a creation or removal under way is then either in the runtime's
// lists when a plugin synchronizes, or relayed to it afterwards.
func (r *nriRelay) blockSync() (unblock func()) {
	if r == nil {
		return func() {}
	}
	return r.a.BlockPluginSync().Unblock
}

// container converts c with its spec.
func (r *nriRelay) container(c *runtime.Container) *nriapi.Container {
	sp, err := r.s.opts.Containers.ContainerSpec(c.ID)
	if err != nil {
		// Removed meanwhile, or its bundle unreadable: plugins get the
		// record's part.
		sp = nil
	}
	return nriContainer(c, sp)
}

// pod finds the pod with id for an event; a pod removed meanwhile is told
// by its ID only.
func (r *nriRelay) pod(id string) *nriapi.PodSandbox {
	sb, err := r.s.opts.Pods.Sandbox(id)
	if err != nil {
		return &nriapi.PodSandbox{Id: id}
	}
	return nriPod(sb)
}

// runPodSandbox relays a pod's creation; it runs as the runtime's Admit
// hook, before anyone else sees the pod. A plugin's error fails the
// creation, and the plugins that saw the pod are told it is gone.
func (r *nriRelay) runPodSandbox(ctx context.Context, sb *runtime.Sandbox) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pod := nriPod(sb)
	err := r.a.RunPodSandbox(ctx, &adaptation.RunPodSandboxRequest{Pod: pod})
	r.phase[sb.ID] = nriRunning
	if err != nil {
		r.stopPodLocked(ctx, pod)
		r.removePodLocked(ctx, pod)
		return fmt.Errorf("nri plugin refused the pod: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return nil
}

// stopPodSandbox relays a pod's stop, once.
func (r *nriRelay) stopPodSandbox(ctx context.Context, sb *runtime.Sandbox) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopPodLocked(ctx, nriPod(sb))
}

func (r *nriRelay) stopPodLocked(ctx context.Context, pod *nriapi.PodSandbox) {
	if p := r.phase[pod.Id]; p != nriRunning && p != nriCreated {
		return
	}
	r.phase[pod.Id] = nriStopped
	if err := r.a.StopPodSandbox(ctx, &adaptation.StopPodSandboxRequest{Pod: pod}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed on a pod's stop", "pod", pod.Id, "error", err)
	}
}

// removePodSandbox relays a pod's removal (and its stop, if that was not
// relayed), once.
func (r *nriRelay) removePodSandbox(ctx context.Context, sb *runtime.Sandbox) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pod := nriPod(sb)
	r.stopPodLocked(ctx, pod)
	r.removePodLocked(ctx, pod)
}

func (r *nriRelay) removePodLocked(ctx context.Context, pod *nriapi.PodSandbox) {
	if _, ok := r.phase[pod.Id]; !ok {
		return
	}
	delete(r.phase, pod.Id)
	if err := r.a.RemovePodSandbox(ctx, &adaptation.RemovePodSandboxRequest{Pod: pod}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed on a pod's removal", "pod", pod.Id, "error", err)
	}
}

// updatePodSandbox relays a pod's new resources (the kubelet resized its
// cgroup); a plugin's error fails the update. Then it relays that the
// update is done.
func (r *nriRelay) updatePodSandbox(ctx context.Context, sb *runtime.Sandbox, overhead, res *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	pod := nriPod(sb)
	if _, err := r.a.UpdatePodSandbox(ctx, &adaptation.UpdatePodSandboxRequest{
		Pod: pod, OverheadLinuxResources: nriResourcesFromCRI(overhead), LinuxResources: nriResourcesFromCRI(res),
	}); err != nil {
		return fmt.Errorf("nri plugin refused the update: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	if err := r.a.PostUpdatePodSandbox(ctx, &adaptation.PostUpdatePodSandboxRequest{Pod: pod}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed after a pod's update", "pod", sb.ID, "error", err)
	}
	return nil
}

// creation is one container creation as NRI sees it.
type creation struct {
	r  *nriRelay
	sb *runtime.Sandbox
	rc runtime.ContainerConfig
	// seen is set once plugins were told of the creation.
	seen   bool
	update []*nriapi.ContainerUpdate
	evict  []*nriapi.ContainerEviction
}

// createContainer prepares the relaying of a container's creation: its
// adjust is the runtime's Adjust hook, done is called with the runtime's
// answer. A nil *creation does nothing.
func (r *nriRelay) createContainer(sb *runtime.Sandbox, rc runtime.ContainerConfig) *creation {
	if r == nil {
		return nil
	}
	return &creation{r: r, sb: sb, rc: rc}
}

// hook is the Adjust hook, or nil without NRI.
func (c *creation) hook() func(context.Context, *specs.Spec) error {
	if c == nil {
		return nil
	}
	return c.adjust
}

// adjust relays the creation with the container's generated spec and
// applies the plugins' adjustment to it. A plugin's error fails the
// creation.
func (c *creation) adjust(ctx context.Context, sp *specs.Spec) error {
	r := c.r
	ctr := nriContainer(&runtime.Container{
		ID: c.rc.ID, SandboxID: c.sb.ID, Config: c.rc, State: runtime.ContainerCreated, CreatedAt: time.Now(),
	}, sp)
	r.mu.Lock()
	resp, err := r.a.CreateContainer(ctx, &adaptation.CreateContainerRequest{Pod: nriPod(c.sb), Container: ctr})
	r.phase[c.rc.ID] = nriCreated
	c.seen = true
	r.mu.Unlock()
	if err != nil {
		return fmt.Errorf("nri plugin refused the container: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	if adj := resp.GetAdjust(); adj != nil {
		g := nrigen.SpecGenerator(ociEditor{sp})
		if err := g.Adjust(adj); err != nil {
			return fmt.Errorf("apply nri adjustment: %w: %w", errdefs.ErrInvalidArgument, err)
		}
	}
	c.update, c.evict = resp.GetUpdate(), resp.GetEvict()
	return nil
}

// done finishes the relaying with the runtime's answer: a container that
// plugins saw but that was not made is reported stopped and removed; a
// made one is reported created, and the plugins' updates and evictions of
// other containers are carried out.
func (c *creation) done(ctx context.Context, made *runtime.Container, err error) {
	if c == nil || !c.seen {
		return
	}
	r := c.r
	ctx = context.WithoutCancel(ctx)
	if err != nil {
		ctr := nriContainer(&runtime.Container{ID: c.rc.ID, SandboxID: c.sb.ID, Config: c.rc, State: runtime.ContainerExited}, nil)
		r.mu.Lock()
		r.stopContainerLocked(ctx, nriPod(c.sb), ctr)
		r.removeContainerLocked(ctx, nriPod(c.sb), ctr)
		r.mu.Unlock()
		return
	}
	r.mu.Lock()
	if err := r.a.PostCreateContainer(ctx, &adaptation.PostCreateContainerRequest{Pod: nriPod(c.sb), Container: r.container(made)}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed after a container's creation", "id", made.ID, "error", err)
	}
	r.mu.Unlock()
	r.apply(ctx, "create container", c.update, c.evict)
}

// startContainer relays a container's start before it happens; a
// plugin's error fails the start.
func (r *nriRelay) startContainer(ctx context.Context, c *runtime.Container) error {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.phase[c.ID] != nriCreated {
		return nil
	}
	err := r.a.StartContainer(ctx, &adaptation.StartContainerRequest{Pod: r.pod(c.SandboxID), Container: r.container(c)})
	r.phase[c.ID] = nriRunning
	if err != nil {
		return fmt.Errorf("nri plugin refused the start: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	return nil
}

// postStartContainer relays that a container started.
func (r *nriRelay) postStartContainer(ctx context.Context, id string) {
	if r == nil {
		return
	}
	c, err := r.s.opts.Containers.Container(id)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.a.PostStartContainer(ctx, &adaptation.PostStartContainerRequest{Pod: r.pod(c.SandboxID), Container: r.container(c)}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed after a container's start", "id", id, "error", err)
	}
}

// updateContainer relays a resource update before it is applied and
// returns the resources to apply: the plugins may change them.
func (r *nriRelay) updateContainer(ctx context.Context, c *runtime.Container, res spec.Resources) (spec.Resources, error) {
	if r == nil {
		return res, nil
	}
	r.mu.Lock()
	resp, err := r.a.UpdateContainer(ctx, &adaptation.UpdateContainerRequest{
		Pod: r.pod(c.SandboxID), Container: r.container(c), LinuxResources: nriResources(res),
	})
	r.mu.Unlock()
	if err != nil {
		return res, fmt.Errorf("nri plugin refused the update: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	updates := resp.GetUpdate()
	// The last update is the one of the container asked about.
	if n := len(updates); n > 0 && updates[n-1].GetContainerId() == c.ID {
		res = mergeNRIResources(res, updates[n-1].GetLinux().GetResources())
		updates = updates[:n-1]
	}
	r.apply(ctx, "update container", updates, resp.GetEvict())
	return res, nil
}

// postUpdateContainer relays that a container's resources changed.
func (r *nriRelay) postUpdateContainer(ctx context.Context, id string) {
	if r == nil {
		return
	}
	c, err := r.s.opts.Containers.Container(id)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.a.PostUpdateContainer(ctx, &adaptation.PostUpdateContainerRequest{Pod: r.pod(c.SandboxID), Container: r.container(c)}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed after a container's update", "id", id, "error", err)
	}
}

// stopContainer relays that a container stopped, once.
func (r *nriRelay) stopContainer(ctx context.Context, id string) {
	if r == nil {
		return
	}
	c, err := r.s.opts.Containers.Container(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.phase[id]
	if p != nriCreated && p != nriRunning {
		return
	}
	ctr := &nriapi.Container{Id: id, State: nriapi.ContainerState_CONTAINER_STOPPED}
	podID := ""
	if err == nil {
		ctr, podID = r.container(c), c.SandboxID
	}
	r.stopContainerLocked(ctx, r.pod(podID), ctr)
}

func (r *nriRelay) stopContainerLocked(ctx context.Context, pod *nriapi.PodSandbox, ctr *nriapi.Container) {
	if p := r.phase[ctr.Id]; p != nriCreated && p != nriRunning {
		return
	}
	r.phase[ctr.Id] = nriStopped
	resp, err := r.a.StopContainer(ctx, &adaptation.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		r.log.WarnContext(ctx, "nri plugins failed on a container's stop", "id", ctr.Id, "error", err)
		return
	}
	if _, err := r.update(ctx, resp.GetUpdate()); err != nil {
		r.log.WarnContext(ctx, "update containers for an nri plugin", "after", "stop container", "error", err)
	}
}

// removeContainer relays a container's removal (and its stop, if that was
// not relayed), once; c is the container as it was before the removal.
func (r *nriRelay) removeContainer(ctx context.Context, c *runtime.Container) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.phase[c.ID]; !ok {
		return
	}
	pod, ctr := r.pod(c.SandboxID), nriContainer(c, nil)
	r.stopContainerLocked(ctx, pod, ctr)
	r.removeContainerLocked(ctx, pod, ctr)
}

func (r *nriRelay) removeContainerLocked(ctx context.Context, pod *nriapi.PodSandbox, ctr *nriapi.Container) {
	if _, ok := r.phase[ctr.Id]; !ok {
		return
	}
	delete(r.phase, ctr.Id)
	if err := r.a.RemoveContainer(ctx, &adaptation.RemoveContainerRequest{Pod: pod, Container: ctr}); err != nil {
		r.log.WarnContext(ctx, "nri plugins failed on a container's removal", "id", ctr.Id, "error", err)
	}
}

// NRI's log package holds one logger for the process (nrilog.Set); these
// are what it is set to forward to.
var (
	nriLogOnce sync.Once
	nriLog     atomic.Pointer[slog.Logger]
)

// nriLogger sends NRI's log lines to berthd's log.
type nriLogger struct{}

func (nriLogger) log(ctx context.Context, level slog.Level, format string, args []any) {
	if l := nriLog.Load(); l != nil {
		l.Log(ctx, level, fmt.Sprintf(format, args...))
	}
}

func (l nriLogger) Debugf(ctx context.Context, format string, args ...any) {
	l.log(ctx, slog.LevelDebug, format, args)
}

// Infof logs at debug: NRI narrates every connection and the plugins'
// order at info, and berthd's info stays about berthd.
func (l nriLogger) Infof(ctx context.Context, format string, args ...any) {
	l.log(ctx, slog.LevelDebug, format, args)
}

func (l nriLogger) Warnf(ctx context.Context, format string, args ...any) {
	l.log(ctx, slog.LevelWarn, format, args)
}

func (l nriLogger) Errorf(ctx context.Context, format string, args ...any) {
	l.log(ctx, slog.LevelError, format, args)
}
