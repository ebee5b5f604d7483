package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestDockerKill9DuringCreates kills berthd while containers are being
// created, started and removed, then restarts it: every container the API
// acknowledged is there under its name, what was half-made is gone, and
// once everything is removed nothing is left (mounts, shims, cgroups,
// snapshots, records, anonymous volumes).
func TestDockerKill9DuringCreates(t *testing.T) {
	e := newDockerEnv(t)
	var everSeen sync.Map
	shimPids := map[int]bool{}
	for round := range 3 {
		api := e.d.Docker()
		var mu sync.Mutex
		acked := map[string]string{}  // name -> ID, creation acknowledged
		removing := map[string]bool{} // a removal was asked (maybe cut by the kill)
		removed := map[string]bool{}  // a removal was acknowledged
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					name := fmt.Sprintf("r%d-w%d-%d", round, w, i)
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					res, err := api.ContainerCreate(ctx, client.ContainerCreateOptions{Name: name,
						Config:     &container.Config{Image: e.Image, Cmd: []string{"sleep", "300"}, Volumes: map[string]struct{}{"/anon": {}}},
						HostConfig: &container.HostConfig{}})
					cancel()
					if err != nil {
						continue
					}
					everSeen.Store(res.ID, true)
					mu.Lock()
					acked[name] = res.ID
					mu.Unlock()
					ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
					if i%2 == 0 {
						api.ContainerStart(ctx, res.ID, client.ContainerStartOptions{})
					}
					if i%3 == 0 {
						mu.Lock()
						removing[name] = true
						mu.Unlock()
						if _, err := api.ContainerRemove(ctx, res.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err == nil {
							mu.Lock()
							removed[name] = true
							mu.Unlock()
						}
					}
					cancel()
				}
			}()
		}
		time.Sleep(time.Duration(1500+rand.IntN(2000)) * time.Millisecond)
		e.d.Kill9()
		close(stop)
		wg.Wait()
		// What the crash cut short is on disk only: its cgroups and
		// shims are checked at the end too.
		for _, dir := range []string{"engine/containers", "runtime/containers", "runtime/sandboxes"} {
			ents, _ := os.ReadDir(filepath.Join(e.d.Root, dir))
			for _, ent := range ents {
				if len(ent.Name()) == 64 {
					everSeen.Store(ent.Name(), true)
				}
			}
		}
		pidFiles, _ := filepath.Glob(filepath.Join(e.d.State, "c", "*", "shim.pid"))
		for _, f := range pidFiles {
			b, _ := os.ReadFile(f)
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
				shimPids[pid] = true
			}
		}
		e.d.Start()
		e.api = e.d.Docker()
		list, err := e.api.ContainerList(t.Context(), client.ContainerListOptions{All: true})
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]string{}
		for _, c := range list.Items {
			names[strings.TrimPrefix(c.Names[0], "/")] = c.ID
		}
		mu.Lock()
		for name, id := range acked {
			got, present := names[name]
			switch {
			case removed[name] && present:
				t.Errorf("round %d: %s was removed, and is back as %s", round, name, got[:12])
			case present && got != id:
				t.Errorf("round %d: %s is %s, was created as %s", round, name, got[:12], id[:12])
			case !present && !removing[name]:
				t.Errorf("round %d: acknowledged container %s (%s) lost", round, name, id[:12])
			}
		}
		t.Logf("round %d: %d creations acknowledged, %d removals acknowledged, %d containers after the restart", round, len(acked), len(removed), len(list.Items))
		mu.Unlock()
		// Everything left works: inspect, start, remove.
		for _, c := range list.Items {
			if _, err := e.api.ContainerInspect(t.Context(), c.ID, client.ContainerInspectOptions{}); err != nil {
				t.Errorf("round %d: inspect %s: %v", round, c.ID[:12], err)
			}
			if _, err := e.api.ContainerStart(t.Context(), c.ID, client.ContainerStartOptions{}); err != nil && !strings.Contains(err.Error(), "already") {
				t.Errorf("round %d: start %s after the crash: %v", round, c.ID[:12], err)
			}
		}
	}
	list, err := e.api.ContainerList(t.Context(), client.ContainerListOptions{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list.Items {
		if _, err := e.api.ContainerRemove(t.Context(), c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			t.Errorf("remove %s: %v", c.ID[:12], err)
		}
	}
	var ids []string
	everSeen.Range(func(k, _ any) bool { ids = append(ids, k.(string)); return true })
	e.checkNoLeftovers(ids)
	for pid := range shimPids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if strings.TrimSpace(string(comm)) == "berth-shim" && !strings.Contains(string(stat), ") Z ") {
			t.Errorf("shim %d of before a crash still runs", pid)
		}
	}
	for _, dir := range []string{"engine/containers", "runtime/containers", "runtime/sandboxes", "snapshots"} {
		ents, _ := os.ReadDir(filepath.Join(e.d.Root, dir))
		for _, ent := range ents {
			if len(ent.Name()) == 64 {
				t.Errorf("leftover %s/%s", dir, ent.Name())
			}
		}
	}
	vols, _ := e.api.VolumeList(t.Context(), client.VolumeListOptions{})
	if len(vols.Items) != 0 {
		t.Errorf("%d anonymous volumes left", len(vols.Items))
	}
}

// TestDockerDaemonRestartPolicies: exits that happen while berthd is down
// are handled when it comes back: always and unless-stopped restart (with
// the restart counted), a container the user stopped stays stopped, --rm
// removes, and a container without a policy shows its exit.
func TestDockerDaemonRestartPolicies(t *testing.T) {
	e := newDockerEnv(t)
	img := e.Image
	e.cli("run", "-d", "--name", "always", "--restart", "always", img, "sleep", "300")
	e.cli("run", "-d", "--name", "unless", "--restart", "unless-stopped", img, "sleep", "300")
	e.cli("run", "-d", "--name", "stopped", "--restart", "unless-stopped", img, "sleep", "300")
	e.cli("stop", "-t", "0", "stopped")
	e.cli("run", "-d", "--name", "autorm", "--rm", img, "sleep", "300")
	e.cli("run", "-d", "--name", "plain", img, "sleep", "300")
	pids := map[string]int{}
	for _, n := range []string{"always", "unless", "autorm", "plain"} {
		pid, _ := strconv.Atoi(strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Pid}}", n)))
		if pid <= 0 {
			t.Fatalf("%s has no pid", n)
		}
		pids[n] = pid
	}
	e.d.Kill9()
	for n, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s's process %d: %v", n, pid, err)
		}
	}
	time.Sleep(500 * time.Millisecond)
	e.d.Start()
	e.api = e.d.Docker()
	await(t, "the restarts", func() bool {
		out, _, _ := e.cliErr("inspect", "--format", "{{.State.Status}}", "always", "unless")
		return out == "running\nrunning\n"
	})
	for n, want := range map[string]string{"always": "running 1 0", "unless": "running 1 0", "stopped": "exited 0 137", "plain": "exited 0 137"} {
		if got := strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}", n)); got != want {
			t.Errorf("%s after the daemon restart: %q, want %q", n, got, want)
		}
	}
	await(t, "the --rm container's removal", func() bool {
		_, errOut, code := e.cliErr("inspect", "autorm")
		return code != 0 && strings.Contains(errOut, "No such object")
	})
	// A second restart with nothing changed changes nothing.
	e.d.Kill9()
	e.d.Start()
	e.api = e.d.Docker()
	time.Sleep(500 * time.Millisecond)
	if got := strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "always")); got != "running 1" {
		t.Errorf("always after a second restart: %q", got)
	}
	// While a policy restart's start runs, the state is restarting, as
	// dockerd's: never exited.
	e.cli("run", "-d", "--name", "flapping", "--restart", "always", img, "sh", "-c", "sleep 0.2; exit 3")
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if got := strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Status}}", "flapping")); got != "running" && got != "restarting" {
			t.Errorf("a container with --restart always between its runs: %q", got)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.cli("rm", "-f", "flapping")
}

// TestDockerAndCRISeparation: the kubelet's view (the CRI) never sees
// standalone containers and docker never sees pods; the CRI cannot stop
// or remove a standalone container's sandbox, which is what the kubelet's
// garbage collector would try.
func TestDockerAndCRISeparation(t *testing.T) {
	e := newDockerEnv(t)
	id := strings.TrimSpace(e.cli("run", "-d", "--name", "standalone", e.Image, "sleep", "300"))
	rt, imgs := e.d.CRI()
	ctx := ctxT(t)
	if _, err := imgs.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.Image}}); err != nil {
		t.Fatal(err)
	}
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "kube-pod", Namespace: "e2e", Uid: "uid-sep"},
		LogDirectory: t.TempDir(),
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE},
		}},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		rt.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: e.Image}, Command: []string{"sleep", "300"}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}

	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil || len(pods.Items) != 1 || pods.Items[0].Id != pod.PodSandboxId {
		t.Errorf("CRI pods: %v %v", pods, err)
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil || len(ctrs.Containers) != 1 || ctrs.Containers[0].Id != c.ContainerId {
		t.Errorf("CRI containers: %v %v", ctrs, err)
	}
	if got := strings.Fields(e.cli("ps", "-aq", "--no-trunc")); len(got) != 1 || got[0] != id {
		t.Errorf("docker ps -a: %v, want only %s", got, id)
	}
	if _, _, code := e.cliErr("inspect", c.ContainerId); code == 0 {
		t.Error("docker inspect found the pod's container")
	}
	if _, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err == nil {
		t.Error("the CRI found the standalone container")
	}
	// What the kubelet's garbage collector would do with a sandbox it does
	// not know: stop and remove it. Nothing happens to the container.
	rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
	rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	if got := strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Status}}", "standalone")); got != "running" {
		t.Errorf("standalone container after the CRI's removals: %q", got)
	}
	e.cli("rm", "-f", "standalone")
}

// TestDockerAfterReboot: a reboot (simulated: berthd, the shims and the
// containers killed, every mount under the daemon's directories gone, the
// state directory emptied as a tmpfs /run is) loses every namespace and
// mount; at its return berthd restarts the containers whose policy says
// so, on their writable layer and with a network, and the others can be
// started by hand.
func TestDockerAfterReboot(t *testing.T) {
	e := newDockerEnv(t)
	img := e.Image
	e.cli("run", "-d", "--name", "always", "--restart", "always", img, "sh", "-c", "echo run >> /runs; cat /runs | wc -l; sleep 300")
	e.cli("run", "-d", "--name", "plain", "-v", "keep:/data", img, "sh", "-c", "echo x >> /data/x; sleep 300")
	await(t, "the first runs", func() bool { return strings.Contains(e.cli("logs", "always"), "1") })
	var pids []int
	for _, n := range []string{"always", "plain"} {
		pid, _ := strconv.Atoi(strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Pid}}", n)))
		pids = append(pids, pid)
	}
	e.d.Kill9()
	for _, pid := range append(pids, e.d.shimPids()...) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	time.Sleep(300 * time.Millisecond)
	unmountAll(filepath.Dir(e.d.Root))
	if err := os.RemoveAll(e.d.State); err != nil {
		t.Fatal(err)
	}
	e.d.Start()
	e.api = e.d.Docker()
	await(t, "the always container's restart after the reboot", func() bool {
		out, _, _ := e.cliErr("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "always")
		return out == "running 1\n"
	})
	await(t, "its second run's output", func() bool { return strings.Contains(e.cli("logs", "always"), "2") })
	if got := strings.Fields(e.cli("logs", "always")); len(got) != 2 || got[1] != "2" {
		t.Errorf("the writable layer did not survive: logs %q", got)
	}
	if ip := strings.TrimSpace(e.cli("inspect", "--format", "{{.NetworkSettings.Networks.bridge.IPAddress}}", "always")); ip == "" {
		t.Error("no address on the default bridge after the reboot")
	}
	if got := e.cli("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "plain"); got != "exited 255\n" {
		t.Errorf("plain after the reboot: %q", got)
	}
	e.cli("start", "plain")
	if got := e.cli("inspect", "--format", "{{.State.Status}}", "plain"); got != "running\n" {
		t.Errorf("plain started by hand after the reboot: %q", got)
	}
}
