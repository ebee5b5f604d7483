package cri

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// fakeRuntime keeps sandboxes and containers in maps and logs the calls
// that change them. It implements every part of the runtime the
// RuntimeService takes, so a method added to one of those interfaces fails
// to compile here rather than panic in a test.
type fakeRuntime struct {
	sandboxes  []*runtime.Sandbox
	containers []*runtime.Container
	calls      []string
	// failSetNetwork makes SetSandboxNetwork fail.
	failSetNetwork error
	// notReady is what Ready reports.
	notReady error
	// specs are the specs CreateContainer made, by container ID.
	specs map[string]*specs.Spec
}

// updated returns what the last UpdateContainerResources of id set; the
// fake records it on the container, as the runtime does.
func (f *fakeRuntime) updated(id string) spec.Resources {
	c, err := f.Container(id)
	if err != nil {
		return spec.Resources{}
	}
	return c.Config.Spec.Resources
}

var (
	_ podRuntime       = (*fakeRuntime)(nil)
	_ containerRuntime = (*fakeRuntime)(nil)
	_ processRuntime   = (*fakeRuntime)(nil)
	_ statsRuntime     = (*fakeRuntime)(nil)
	_ health           = (*fakeRuntime)(nil)
)

func (f *fakeRuntime) Ready() error { return f.notReady }

func (f *fakeRuntime) CreateSandbox(ctx context.Context, c runtime.SandboxConfig) (*runtime.Sandbox, error) {
	// Sequential IDs, whatever the caller asked: tests filter by prefix.
	id := fmt.Sprintf("%064d", len(f.sandboxes)+1)
	admit := c.Admit
	c.Network, c.Admit = nil, nil
	sb := &runtime.Sandbox{ID: id, Config: c, NetNSPath: "/run/netns/" + id, CreatedAt: time.Unix(1, 0)}
	f.calls = append(f.calls, "CreateSandbox")
	// As the runtime: the pod is not visible while its Admit hook runs,
	// and a refusal leaves nothing.
	if admit != nil {
		if err := admit(ctx, sb); err != nil {
			return nil, err
		}
	}
	f.sandboxes = append(f.sandboxes, sb)
	return sb, nil
}

func (f *fakeRuntime) SetSandboxNetwork(_ context.Context, id string, ips []string) error {
	f.calls = append(f.calls, "SetSandboxNetwork "+strings.Join(ips, ","))
	if f.failSetNetwork != nil {
		return f.failSetNetwork
	}
	sb, err := f.Sandbox(id)
	if err != nil {
		return err
	}
	sb.IPs = ips
	return nil
}

func (f *fakeRuntime) StopSandbox(_ context.Context, id string, _ time.Duration) error {
	f.calls = append(f.calls, "StopSandbox")
	sb, err := f.Sandbox(id)
	if err != nil {
		return err
	}
	sb.State = runtime.SandboxNotReady
	return nil
}

func (f *fakeRuntime) RemoveSandbox(ctx context.Context, id string) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	f.calls = append(f.calls, "RemoveSandbox")
	f.sandboxes = slices.DeleteFunc(f.sandboxes, func(sb *runtime.Sandbox) bool { return sb.ID == id })
	return nil
}

func (f *fakeRuntime) Sandbox(id string) (*runtime.Sandbox, error) {
	for _, sb := range f.sandboxes {
		if id != "" && strings.HasPrefix(sb.ID, id) {
			return sb, nil
		}
	}
	return nil, fmt.Errorf("sandbox %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeRuntime) ListSandboxes() []*runtime.Sandbox { return f.sandboxes }

func (f *fakeRuntime) CreateContainer(ctx context.Context, c runtime.ContainerConfig) (*runtime.Container, error) {
	sb, err := f.Sandbox(c.SandboxID)
	if err != nil {
		return nil, err
	}
	if sb.State != runtime.SandboxReady {
		return nil, fmt.Errorf("create container %s: sandbox %s is not ready: %w", c.Name, sb.ID, errdefs.ErrFailedPrecondition)
	}
	adjust := c.Adjust
	c.Adjust = nil
	// A spec as the runtime would generate it, in part, for the Adjust
	// hook and ContainerSpec.
	sp := &specs.Spec{
		Process:     &specs.Process{Args: c.Spec.Args, Env: c.Spec.Env},
		Annotations: c.Spec.Annotations,
		Linux:       &specs.Linux{Resources: &specs.LinuxResources{}},
	}
	if adjust != nil {
		if err := adjust(ctx, sp); err != nil {
			return nil, err
		}
	}
	ctr := &runtime.Container{ID: c.ID, SandboxID: c.SandboxID, Config: c, State: runtime.ContainerCreated, CreatedAt: time.Unix(2, 0)}
	f.containers = append(f.containers, ctr)
	if f.specs == nil {
		f.specs = map[string]*specs.Spec{}
	}
	f.specs[c.ID] = sp
	f.calls = append(f.calls, "CreateContainer "+c.ID)
	return ctr, nil
}

func (f *fakeRuntime) StartContainer(_ context.Context, id string) error {
	c, err := f.Container(id)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "StartContainer "+c.ID)
	c.State = runtime.ContainerRunning
	return nil
}

func (f *fakeRuntime) StopContainer(_ context.Context, id string, _ time.Duration) error {
	c, err := f.Container(id)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "StopContainer "+c.ID)
	c.State = runtime.ContainerExited
	return nil
}

func (f *fakeRuntime) RemoveContainer(_ context.Context, id string) error {
	f.calls = append(f.calls, "RemoveContainer "+id)
	f.containers = slices.DeleteFunc(f.containers, func(c *runtime.Container) bool { return c.ID == id })
	return nil
}

func (f *fakeRuntime) Container(id string) (*runtime.Container, error) {
	for _, c := range f.containers {
		if id != "" && strings.HasPrefix(c.ID, id) {
			return c, nil
		}
	}
	return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
}

func (f *fakeRuntime) ListContainers() []*runtime.Container { return f.containers }

// ContainerSpec serves a spec with the container's recorded user; the fake
// writes no bundles.
func (f *fakeRuntime) ContainerSpec(id string) (*specs.Spec, error) {
	c, err := f.Container(id)
	if err != nil {
		return nil, err
	}
	if sp := f.specs[c.ID]; sp != nil {
		return sp, nil
	}
	sp := &specs.Spec{Process: &specs.Process{Args: c.Config.Spec.Args}}
	if c.User != nil {
		sp.Process.User = specs.User{UID: c.User.UID, GID: c.User.GID, AdditionalGids: c.User.AdditionalGIDs}
	}
	return sp, nil
}

// The process and stats parts answer as a runtime whose containers have no
// processes to run or read: the tests that need figures or events override
// them (metricsRuntime, eventsRuntime).

func (f *fakeRuntime) ExecSync(_ context.Context, id string, _ []string, _ time.Duration) ([]byte, []byte, int32, error) {
	if _, err := f.Container(id); err != nil {
		return nil, nil, 0, err
	}
	return nil, nil, 0, fmt.Errorf("exec in fake container %s: %w", id, errdefs.ErrNotImplemented)
}

func (f *fakeRuntime) UpdateContainerResources(_ context.Context, id string, r spec.Resources) error {
	c, err := f.Container(id)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "UpdateContainerResources "+c.ID)
	c.Config.Spec.Resources = r
	return nil
}

func (f *fakeRuntime) ReopenContainerLog(_ context.Context, id string) error {
	c, err := f.Container(id)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, "ReopenContainerLog "+c.ID)
	return nil
}

func (f *fakeRuntime) ContainerStats(_ context.Context, id string) (*runtime.ContainerStats, error) {
	c, err := f.Container(id)
	if err != nil {
		return nil, err
	}
	return &runtime.ContainerStats{ID: c.ID}, nil
}

func (f *fakeRuntime) SandboxStats(_ context.Context, id string) (*runtime.SandboxStats, error) {
	sb, err := f.Sandbox(id)
	if err != nil {
		return nil, err
	}
	return &runtime.SandboxStats{ID: sb.ID}, nil
}

func (f *fakeRuntime) SandboxMetrics(_ context.Context, id string) (*runtime.SandboxMetrics, error) {
	sb, err := f.Sandbox(id)
	if err != nil {
		return nil, err
	}
	return &runtime.SandboxMetrics{ID: sb.ID}, nil
}

// Subscribe returns a channel that closes with ctx: the fake emits no
// events.
func (f *fakeRuntime) Subscribe(ctx context.Context) <-chan runtime.Event {
	ch := make(chan runtime.Event)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

// withRuntime returns opts with every runtime part set to rt.
func withRuntime(opts RuntimeOptions, rt interface {
	podRuntime
	containerRuntime
	processRuntime
	statsRuntime
	health
}) RuntimeOptions {
	opts.Pods, opts.Containers, opts.Processes, opts.Stats, opts.Health = rt, rt, rt, rt, rt
	return opts
}

// fakeNetwork records attaches and detaches.
type fakeNetwork struct {
	attachErr error
	// cancel, when set, is called during Attach (a kubelet giving up).
	cancel  func()
	calls   []string
	mapping []PortMapping
	// detachErr fails Detach (after recording the call).
	detachErr error
}

func (n *fakeNetwork) Ready(context.Context) (bool, string) { return true, "" }

func (n *fakeNetwork) Attach(_ context.Context, p PodNetwork) ([]string, error) {
	n.calls = append(n.calls, "Attach "+p.PodName)
	if n.cancel != nil {
		n.cancel()
	}
	if n.attachErr != nil {
		return nil, n.attachErr
	}
	return []string{"10.0.0.2", "fd00::2"}, nil
}

func (n *fakeNetwork) Detach(ctx context.Context, p PodNetwork) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	n.calls = append(n.calls, "Detach "+p.PodName)
	n.mapping = p.PortMappings
	return n.detachErr
}

// fakeSnapshots has at most one image (any name finds it), records the
// snapshots prepared from it (bind mounts of nothing) and those removed.
type fakeSnapshots struct {
	image    *imagestore.Image
	prepared []string
	removed  []string
}

var _ Snapshotter = (*fakeSnapshots)(nil)

func (s *fakeSnapshots) Get(_ context.Context, name string) (*imagestore.Image, error) {
	if s.image == nil {
		return nil, fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
	}
	return s.image, nil
}

func (s *fakeSnapshots) Prepare(_ context.Context, id, image string) ([]imagestore.Mount, error) {
	if s.image == nil || image != s.image.ID.String() {
		return nil, fmt.Errorf("prepare %s from %s: image %s: %w", id, image, image, errdefs.ErrNotFound)
	}
	s.prepared = append(s.prepared, id)
	return []imagestore.Mount{{Type: "bind", Source: "/nonexistent/" + id, Options: []string{"rbind"}}}, nil
}

func (s *fakeSnapshots) View(_ context.Context, id, image string) ([]imagestore.Mount, error) {
	return nil, fmt.Errorf("view %s of %s: image %s: %w", id, image, image, errdefs.ErrNotFound)
}

func (s *fakeSnapshots) RemoveSnapshot(_ context.Context, id string) error {
	s.removed = append(s.removed, id)
	return nil
}

func podRequest(name string, labels map[string]string) *runtimeapi.RunPodSandboxRequest {
	return &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "ns", Uid: "uid-" + name},
		Labels:       labels,
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 81}},
	}}
}

func newTestService() (*RuntimeService, *fakeRuntime, *fakeNetwork, *fakeSnapshots) {
	rt, nw, sn := &fakeRuntime{}, &fakeNetwork{}, &fakeSnapshots{}
	return NewRuntimeService(withRuntime(RuntimeOptions{Network: nw, Images: sn}, rt)), rt, nw, sn
}

func TestRunPodSandbox(t *testing.T) {
	s, rt, nw, _ := newTestService()
	resp, err := s.RunPodSandbox(t.Context(), podRequest("web", nil))
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.Network.Ip != "10.0.0.2" || len(st.Status.Network.AdditionalIps) != 1 || st.Status.Network.AdditionalIps[0].Ip != "fd00::2" {
		t.Errorf("network status = %v", st.Status.Network)
	}
	if len(st.Status.Annotations) != 0 {
		t.Errorf("reserved annotation leaked to the client: %v", st.Status.Annotations)
	}
	if want := []string{"CreateSandbox", "SetSandboxNetwork 10.0.0.2,fd00::2"}; !reflect.DeepEqual(rt.calls, want) {
		t.Errorf("runtime calls = %q, want %q", rt.calls, want)
	}
	if want := []string{"Attach web"}; !reflect.DeepEqual(nw.calls, want) {
		t.Errorf("network calls = %q, want %q", nw.calls, want)
	}
}

func TestRunPodSandboxRollback(t *testing.T) {
	t.Run("attach fails", func(t *testing.T) {
		s, rt, nw, _ := newTestService()
		nw.attachErr = fmt.Errorf("plugin bridge: %w", errdefs.ErrUnavailable)
		_, err := s.RunPodSandbox(t.Context(), podRequest("web", nil))
		if !errdefs.IsUnavailable(err) {
			t.Fatalf("err = %v, want the attach error's class", err)
		}
		if want := []string{"CreateSandbox", "RemoveSandbox"}; !reflect.DeepEqual(rt.calls, want) {
			t.Errorf("runtime calls = %q, want %q", rt.calls, want)
		}
		if len(rt.sandboxes) != 0 {
			t.Errorf("sandbox left behind")
		}
	})
	t.Run("record fails after attach, caller gone", func(t *testing.T) {
		s, rt, nw, _ := newTestService()
		ctx, cancel := context.WithCancel(t.Context())
		nw.cancel = cancel
		rt.failSetNetwork = fmt.Errorf("write record: %w", errdefs.ErrInternal)
		_, err := s.RunPodSandbox(ctx, podRequest("web", nil))
		if !errdefs.IsInternal(err) {
			t.Fatalf("err = %v, want Internal", err)
		}
		// The undo runs on a context the cancellation does not reach, in
		// reverse order: CNI DEL before the sandbox goes.
		if want := []string{"Attach web", "Detach web"}; !reflect.DeepEqual(nw.calls, want) {
			t.Errorf("network calls = %q, want %q", nw.calls, want)
		}
		if rt.calls[len(rt.calls)-1] != "RemoveSandbox" || len(rt.sandboxes) != 0 {
			t.Errorf("runtime calls = %q, sandboxes left %d", rt.calls, len(rt.sandboxes))
		}
	})
}

func TestStopRemoveIdempotent(t *testing.T) {
	s, rt, nw, sn := newTestService()
	ctx := t.Context()
	for _, id := range []string{"", "unknown"} {
		if _, err := s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("stop unknown pod %q: %v", id, err)
		}
		if _, err := s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("remove unknown pod %q: %v", id, err)
		}
		if _, err := s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("remove unknown container %q: %v", id, err)
		}
		if _, err := s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
			t.Errorf("stop unknown container %q: %v", id, err)
		}
	}
	for name, call := range map[string]func() error{
		"PodSandboxStatus": func() error {
			_, err := s.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: "unknown"})
			return err
		},
		"ContainerStatus": func() error {
			_, err := s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: "unknown"})
			return err
		},
		"PortForward": func() error {
			_, err := s.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: "unknown"})
			return err
		},
	} {
		if err := call(); !errdefs.IsNotFound(err) {
			t.Errorf("%s of an unknown ID: %v, want NotFound", name, err)
		}
	}

	// A pod with a container: stop detaches with the recorded mappings and
	// kills the container; stop again succeeds without a second DEL; remove
	// does not detach again and removes the container's snapshot.
	resp, err := s.RunPodSandbox(ctx, podRequest("web", nil))
	if err != nil {
		t.Fatal(err)
	}
	rt.containers = append(rt.containers, &runtime.Container{ID: "c1", SandboxID: resp.PodSandboxId, State: runtime.ContainerRunning})
	for range 2 {
		if _, err := s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}; !reflect.DeepEqual(nw.mapping, want) {
		t.Errorf("detach mappings = %+v, want %+v (containerPort-only entries dropped)", nw.mapping, want)
	}
	if rt.containers[0].State != runtime.ContainerExited {
		t.Errorf("container still running after StopPodSandbox")
	}
	if _, err := s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"Attach web", "Detach web"}; !reflect.DeepEqual(nw.calls, want) {
		t.Errorf("network calls = %q, want %q", nw.calls, want)
	}
	// Removed without a stop, or after a stop whose DEL failed: remove runs
	// the DEL.
	nw.calls = nil
	for _, failStop := range []bool{false, true} {
		resp, err := s.RunPodSandbox(ctx, podRequest("web", nil))
		if err != nil {
			t.Fatal(err)
		}
		if failStop {
			nw.detachErr = errdefs.ErrUnavailable
			if _, err := s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err == nil {
				t.Fatal("stop with a failing DEL succeeded")
			}
			nw.detachErr = nil
		}
		if _, err := s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"Attach web", "Detach web", "Attach web", "Detach web", "Detach web"}; !reflect.DeepEqual(nw.calls, want) {
		t.Errorf("network calls = %q, want %q", nw.calls, want)
	}
	if len(rt.sandboxes) != 0 || len(rt.containers) != 0 || !slices.Contains(sn.removed, "c1") {
		t.Errorf("after remove: %d pods, %d containers, snapshots removed %q", len(rt.sandboxes), len(rt.containers), sn.removed)
	}
}

func TestListFilters(t *testing.T) {
	s, rt, _, _ := newTestService()
	ctx := t.Context()
	a, err := s.RunPodSandbox(ctx, podRequest("a", map[string]string{"app": "x", "tier": "web"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.RunPodSandbox(ctx, podRequest("b", map[string]string{"app": "y"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: b.PodSandboxId}); err != nil {
		t.Fatal(err)
	}
	rt.containers = []*runtime.Container{
		{ID: "c-a-run", SandboxID: a.PodSandboxId, State: runtime.ContainerRunning, Config: runtime.ContainerConfig{Labels: map[string]string{"k": "1"}}},
		{ID: "c-a-exit", SandboxID: a.PodSandboxId, State: runtime.ContainerExited, Config: runtime.ContainerConfig{Labels: map[string]string{"k": "2"}}},
		{ID: "c-b-created", SandboxID: b.PodSandboxId, State: runtime.ContainerCreated},
	}

	pods := func(f *runtimeapi.PodSandboxFilter) []string {
		resp, err := s.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, p := range resp.Items {
			names = append(names, p.Metadata.Name)
		}
		return names
	}
	for _, tc := range []struct {
		f    *runtimeapi.PodSandboxFilter
		want []string
	}{
		{nil, []string{"a", "b"}},
		{&runtimeapi.PodSandboxFilter{Id: "0000000000"}, []string{"a", "b"}}, // a prefix of both IDs
		{&runtimeapi.PodSandboxFilter{Id: b.PodSandboxId}, []string{"b"}},
		{&runtimeapi.PodSandboxFilter{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}, []string{"a"}},
		{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "x"}}, []string{"a"}},
		{&runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "x", "tier": "db"}}, nil},
	} {
		if got := pods(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("pods(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}

	ctrs := func(f *runtimeapi.ContainerFilter) []string {
		resp, err := s.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, c := range resp.Containers {
			ids = append(ids, c.Id)
		}
		return ids
	}
	for _, tc := range []struct {
		f    *runtimeapi.ContainerFilter
		want []string
	}{
		{nil, []string{"c-a-run", "c-a-exit", "c-b-created"}},
		{&runtimeapi.ContainerFilter{Id: "c-a"}, []string{"c-a-run", "c-a-exit"}},
		{&runtimeapi.ContainerFilter{PodSandboxId: b.PodSandboxId}, []string{"c-b-created"}},
		{&runtimeapi.ContainerFilter{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}}, []string{"c-a-exit"}},
		{&runtimeapi.ContainerFilter{LabelSelector: map[string]string{"k": "1"}}, []string{"c-a-run"}},
		{&runtimeapi.ContainerFilter{Id: "c-a", LabelSelector: map[string]string{"k": "3"}}, nil},
	} {
		if got := ctrs(tc.f); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("containers(%v) = %q, want %q", tc.f, got, tc.want)
		}
	}
}

func TestUpdateRuntimeConfig(t *testing.T) {
	s, _, _, _ := newTestService()
	req := func(cidr string) *runtimeapi.UpdateRuntimeConfigRequest {
		return &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr}}}
	}
	if _, err := s.UpdateRuntimeConfig(t.Context(), req("10.1.0.0/16,fd00::/64")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateRuntimeConfig(t.Context(), req("nonsense")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("bad cidr: %v", err)
	}
	st, err := s.Status(t.Context(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.Info["podCIDR"] != "10.1.0.0/16,fd00::/64" {
		t.Errorf("status info = %v", st.Info)
	}
}

func TestPodLocks(t *testing.T) {
	var p podLocks
	unlockA := p.lock("a")
	done := make(chan struct{})
	go func() {
		defer close(done)
		unlock := p.lock("a")
		unlock()
	}()
	// Another pod is not held up by a.
	p.lock("b")()
	select {
	case <-done:
		t.Fatal("second lock of the same pod did not wait")
	case <-time.After(20 * time.Millisecond):
	}
	unlockA()
	<-done
	if len(p.locks) != 0 {
		t.Errorf("locks left: %v", p.locks)
	}
}

// TestContainerStatusUser: the status reports the user the runtime
// resolved, and a verbose status the spec the runtime serves.
func TestContainerStatusUser(t *testing.T) {
	s, rt, _, _ := newTestService()
	pod, err := s.RunPodSandbox(t.Context(), podRequest("web", nil))
	if err != nil {
		t.Fatal(err)
	}
	rt.containers = []*runtime.Container{{
		ID: "c1", SandboxID: pod.PodSandboxId, State: runtime.ContainerCreated,
		Config: runtime.ContainerConfig{Name: "app", Spec: spec.Container{Args: []string{"sh"}}},
		User:   &runtime.User{UID: 1000, GID: 2000, AdditionalGIDs: []uint32{2000, 3000}},
	}}
	resp, err := s.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: "c1", Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	u := resp.Status.GetUser().GetLinux()
	if u.GetUid() != 1000 || u.GetGid() != 2000 || !reflect.DeepEqual(u.GetSupplementalGroups(), []int64{2000, 3000}) {
		t.Errorf("user = %v, want 1000:2000 with 2000,3000", u)
	}
	if !strings.Contains(resp.Info["info"], `"uid":1000`) || !strings.Contains(resp.Info["info"], `"args":["sh"]`) {
		t.Errorf("verbose info lacks the runtime's spec: %s", resp.Info["info"])
	}
	// Not resolved (a record of a runtime that did not keep it): no user,
	// rather than root.
	rt.containers[0].User = nil
	resp, err = s.ContainerStatus(t.Context(), &runtimeapi.ContainerStatusRequest{ContainerId: "c1"})
	if err != nil || resp.Status.User != nil {
		t.Errorf("status without a resolved user = %v, %v; want no user", resp.GetStatus().GetUser(), err)
	}
}
