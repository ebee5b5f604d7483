package cri

import (
	"context"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/nritest"
)

// These tests run NRI's real adaptation on a temp socket against real
// plugin processes (internal/nritest/plugin); the runtime below the CRI is
// the fake, which honours the Admit and Adjust hooks as the runtime does.

// nriEnv is a RuntimeService with NRI on a socket of the test's own.
type nriEnv struct {
	s      *RuntimeService
	rt     *fakeRuntime
	sn     *fakeSnapshots
	socket string
	plugin string
}

func newNRIEnv(t *testing.T, timeout time.Duration) *nriEnv {
	t.Helper()
	dir := t.TempDir()
	e := &nriEnv{
		rt:     &fakeRuntime{},
		sn:     &fakeSnapshots{image: &imagestore.Image{ID: digest.FromString("nri-test-image"), RepoTags: []string{"busybox:nri"}, Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sleep", "1000"}}}}},
		socket: filepath.Join(dir, "nri.sock"),
		plugin: nritest.Build(t),
	}
	e.s = NewRuntimeService(withRuntime(RuntimeOptions{
		Version: "0.0.0-test",
		Network: &fakeNetwork{},
		Images:  e.sn,
		NRI: &NRIConfig{
			SocketPath:       e.socket,
			PluginPath:       filepath.Join(dir, "plugins"),
			PluginConfigPath: filepath.Join(dir, "conf.d"),
			// Process-wide in NRI: every test sets its own.
			RegistrationTimeout: 5 * time.Second,
			RequestTimeout:      timeout,
		},
	}, e.rt))
	if err := e.s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.s.Close)
	return e
}

// connect starts a plugin and waits until it is synchronized.
func (e *nriEnv) connect(t *testing.T, args ...string) *nritest.Plugin {
	t.Helper()
	p := nritest.Start(t, e.plugin, e.socket, args...)
	p.WaitFor("Synchronize", nil)
	return p
}

func (e *nriEnv) runPod(t *testing.T, name string) (string, error) {
	t.Helper()
	resp, err := e.s.RunPodSandbox(t.Context(), podRequest(name, nil))
	return resp.GetPodSandboxId(), err
}

func (e *nriEnv) createContainer(t *testing.T, pod, name string) (string, error) {
	t.Helper()
	resp, err := e.s.CreateContainer(t.Context(), &runtimeapi.CreateContainerRequest{
		PodSandboxId: pod,
		Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name},
			Image:    &runtimeapi.ImageSpec{Image: "busybox:nri"},
		},
	})
	return resp.GetContainerId(), err
}

// names are the events of pod (or of any pod, for ""), in order.
func names(events []nritest.Event, pod string) []string {
	var out []string
	for _, e := range events {
		if e.Event != "Synchronize" && (pod == "" || e.Pod == pod) {
			out = append(out, e.Event)
		}
	}
	return out
}

// TestNRILifecycle: a plugin hears of every step of a pod and its
// container, once each and in order, with the pod's and container's names,
// and its adjustment is in the spec the container is created with.
func TestNRILifecycle(t *testing.T) {
	e := newNRIEnv(t, 2*time.Second)
	p := e.connect(t, "-env", "NRI_ADDED=yes", "-annotation", "berth.test/nri=adjusted", "-cpuset", "0")
	ctx := t.Context()

	pod, err := e.runPod(t, "web")
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := e.createContainer(t, pod, "app")
	if err != nil {
		t.Fatal(err)
	}
	sp := e.rt.specs[ctr]
	if !slices.Contains(sp.Process.Env, "NRI_ADDED=yes") || sp.Annotations["berth.test/nri"] != "adjusted" {
		t.Errorf("spec after the plugin's adjustment: env %q, annotations %v", sp.Process.Env, sp.Annotations)
	}
	if _, err := e.s.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	// The plugin's answer to an update changes the cpuset; the limits it
	// does not name stay as the kubelet asked.
	if _, err := e.s.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{ContainerId: ctr, Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, CpusetCpus: "1"}}); err != nil {
		t.Fatal(err)
	}
	if r := e.rt.updated(ctr); r.CpusetCpus != "0" || r.MemoryLimit != 64<<20 {
		t.Errorf("resources applied = cpuset %q memory %d, want the plugin's cpuset 0 and the kubelet's 64 MiB", r.CpusetCpus, r.MemoryLimit)
	}
	if _, err := e.s.UpdatePodSandboxResources(ctx, &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: pod, Resources: &runtimeapi.LinuxContainerResources{CpuShares: 512}}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.s.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: ctr}); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := e.s.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	p.WaitFor("RemovePodSandbox", nil)
	events := p.Events()
	want := []string{
		"RunPodSandbox", "CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer",
		"UpdateContainer", "PostUpdateContainer", "UpdatePodSandbox", "PostUpdatePodSandbox",
		"StopContainer", "RemoveContainer", "StopPodSandbox", "RemovePodSandbox",
	}
	if got := names(events, pod); !slices.Equal(got, want) {
		t.Errorf("events = %q\nwant     %q", got, want)
	}
	for _, ev := range events {
		switch {
		case ev.Event == "RunPodSandbox" && (ev.Pod != pod || ev.PodName != "web"):
			t.Errorf("RunPodSandbox event = %+v, want pod %s named web", ev, pod)
		case ev.Container != "" && (ev.Container != ctr || ev.Name != "app"):
			t.Errorf("%s event = %+v, want container %s named app", ev.Event, ev, ctr)
		}
	}
}

// TestNRIPluginHangs: a plugin that hangs in a hook costs the pod or
// container NRI's request timeout, no more; it is then disconnected and
// the next pod does not wait for it.
func TestNRIPluginHangs(t *testing.T) {
	const timeout = time.Second
	for _, hook := range []string{"RunPodSandbox", "CreateContainer"} {
		t.Run(hook, func(t *testing.T) {
			e := newNRIEnv(t, timeout)
			p := e.connect(t, "-hang", hook)
			step := func(name string) (time.Duration, error) {
				start := time.Now()
				pod, err := e.runPod(t, name)
				if err == nil {
					_, err = e.createContainer(t, pod, "app")
				}
				return time.Since(start), err
			}
			took, err := step("first")
			if err != nil {
				t.Fatalf("with a hung plugin: %v", err)
			}
			p.WaitFor(hook, nil)
			// It waited for the plugin, then went on without it. The upper
			// bound only says "not stalled": the machine may be busy.
			if took < timeout || took > timeout+10*time.Second {
				t.Errorf("pod and container with a plugin hung in %s took %v, want about the %v request timeout", hook, took, timeout)
			}
			took, err = step("second")
			if err != nil || took >= timeout {
				t.Errorf("after the hung plugin was dropped: %v, took %v (want less than %v)", err, took, timeout)
			}
			if got := names(p.Events(), ""); got[len(got)-1] != hook {
				t.Errorf("the dropped plugin got events after the one it hung in: %q", got)
			}
		})
	}
}

// TestNRIPluginDies: a plugin whose process dies in a hook does not make
// the pod or container wait: its connection closes and it is dropped.
func TestNRIPluginDies(t *testing.T) {
	const timeout = 5 * time.Second
	for _, hook := range []string{"RunPodSandbox", "CreateContainer", "StartContainer"} {
		t.Run(hook, func(t *testing.T) {
			e := newNRIEnv(t, timeout)
			p := e.connect(t, "-die", hook)
			start := time.Now()
			pod, err := e.runPod(t, "web")
			if err != nil {
				t.Fatal(err)
			}
			ctr, err := e.createContainer(t, pod, "app")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := e.s.StartContainer(t.Context(), &runtimeapi.StartContainerRequest{ContainerId: ctr}); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took >= timeout {
				t.Errorf("pod, container and start with a plugin that died in %s took %v, want less than the %v request timeout", hook, took, timeout)
			}
			if !p.WaitExit(10 * time.Second) {
				t.Errorf("the plugin did not die")
			}
		})
	}
}

// TestNRIPluginRefuses: a plugin's error fails the pod or container; what
// was made is undone, the plugins are told it is gone, and the same pod or
// container can be made once the plugin agrees.
func TestNRIPluginRefuses(t *testing.T) {
	t.Run("RunPodSandbox", func(t *testing.T) {
		e := newNRIEnv(t, 2*time.Second)
		p := e.connect(t, "-fail", "RunPodSandbox")
		_, err := e.runPod(t, "web")
		if !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("RunPodSandbox refused by a plugin: %v, want FailedPrecondition", err)
		}
		if len(e.rt.sandboxes) != 0 {
			t.Errorf("refused pod left in the runtime: %+v", e.rt.sandboxes)
		}
		run := p.WaitFor("RunPodSandbox", nil)
		p.WaitFor("RemovePodSandbox", nil)
		if got, want := names(p.Events(), run.Pod), []string{"RunPodSandbox", "StopPodSandbox", "RemovePodSandbox"}; !slices.Equal(got, want) {
			t.Errorf("events of the refused pod = %q, want %q", got, want)
		}
	})
	t.Run("CreateContainer", func(t *testing.T) {
		e := newNRIEnv(t, 2*time.Second)
		p := e.connect(t, "-fail", "CreateContainer")
		pod, err := e.runPod(t, "web")
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.createContainer(t, pod, "app")
		if !errdefs.IsFailedPrecondition(err) {
			t.Fatalf("CreateContainer refused by a plugin: %v, want FailedPrecondition", err)
		}
		if len(e.rt.containers) != 0 {
			t.Errorf("refused container left in the runtime: %+v", e.rt.containers)
		}
		create := p.WaitFor("CreateContainer", nil)
		if !slices.Equal(e.sn.removed, []string{create.Container}) {
			t.Errorf("snapshots removed = %q, want the refused container's %s", e.sn.removed, create.Container)
		}
		p.WaitFor("RemoveContainer", nil)
		if got, want := names(p.Events(), pod), []string{"RunPodSandbox", "CreateContainer", "StopContainer", "RemoveContainer"}; !slices.Equal(got, want) {
			t.Errorf("events = %q, want %q", got, want)
		}
	})
}

// TestNRISynchronize: a plugin that connects late is told the pods and the
// containers that have not exited.
func TestNRISynchronize(t *testing.T) {
	e := newNRIEnv(t, 2*time.Second)
	pod, err := e.runPod(t, "web")
	if err != nil {
		t.Fatal(err)
	}
	running, err := e.createContainer(t, pod, "running")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.StartContainer(t.Context(), &runtimeapi.StartContainerRequest{ContainerId: running}); err != nil {
		t.Fatal(err)
	}
	exited, err := e.createContainer(t, pod, "exited")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.s.StopContainer(t.Context(), &runtimeapi.StopContainerRequest{ContainerId: exited}); err != nil {
		t.Fatal(err)
	}
	p := nritest.Start(t, e.plugin, e.socket)
	sync := p.WaitFor("Synchronize", nil)
	if !slices.Equal(sync.Pods, []string{pod}) || !slices.Equal(sync.Containers, []string{running}) {
		t.Errorf("synchronized pods %q, containers %q; want %q and only the running %q", sync.Pods, sync.Containers, pod, running)
	}
	// From then on it hears of what happens.
	if _, err := e.s.StopContainer(context.WithoutCancel(t.Context()), &runtimeapi.StopContainerRequest{ContainerId: running}); err != nil {
		t.Fatal(err)
	}
	p.WaitFor("StopContainer", func(ev nritest.Event) bool { return ev.Container == running })
}

// TestNRISocketInUse: berthd does not take the NRI socket of a runtime
// that serves on it (NRI itself would remove it).
func TestNRISocketInUse(t *testing.T) {
	e := newNRIEnv(t, 2*time.Second)
	other := NewRuntimeService(withRuntime(RuntimeOptions{NRI: &NRIConfig{SocketPath: e.socket, RequestTimeout: 2 * time.Second}}, &fakeRuntime{}))
	if err := other.Start(t.Context()); !errdefs.IsAlreadyExists(err) {
		other.Close()
		t.Fatalf("second NRI on %s: %v, want AlreadyExists", e.socket, err)
	}
	// The first still serves.
	e.connect(t)
}
