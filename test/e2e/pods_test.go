package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodsSurviveKill9 kills berthd with SIGKILL while two pods run: the
// containers keep running and logging and their host port keeps answering;
// a container that exits meanwhile is reported with its real exit code and
// finish time after the restart, with the same pods, containers and IPs;
// exec, stop and remove work; and removing the pods leaves nothing behind.
// It also shows a host port reaching a pod and two containers of one pod
// talking over localhost.
func TestPodsSurviveKill9(t *testing.T) {
	e := newPodEnv(t)
	ctx := ctxT(t)
	rt := e.rt

	www := t.TempDir()
	writeFile(t, filepath.Join(www, "index.html"), "hello from web\n")
	hostPort := freePort(t)
	webID, webCfg := e.RunPod("web", podOptions{
		Ports:     []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: int32(hostPort), HostIp: "127.0.0.1"}},
		SharedPID: true,
	})
	httpd := e.RunContainer(webID, webCfg, "httpd", "exec httpd -f -p 8080 -h /www",
		containerOptions{Mounts: []*runtimeapi.Mount{{ContainerPath: "/www", HostPath: www, Readonly: true}}})
	ticker := e.RunContainer(webID, webCfg, "ticker", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done", containerOptions{})
	// Exits with 7 a few seconds in: berthd is down by then.
	short := e.RunContainer(webID, webCfg, "short", "echo short started; sleep 4; exit 7", containerOptions{})
	otherID, otherCfg := e.RunPod("other", podOptions{})
	sleeper := e.RunContainer(otherID, otherCfg, "sleeper", "echo sleeping; exec sleep 3600", containerOptions{})
	allCtrs := []string{httpd, ticker, short, sleeper}

	// A host port reaches the pod; a second container reaches the first
	// over the pod's localhost.
	hostURL := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	if body, err := httpGet(hostURL); err != nil || body != "hello from web\n" {
		t.Errorf("GET %s (host port) = %q, %v", hostURL, body, err)
	}
	out, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ticker, Cmd: []string{"wget", "-qO-", "http://localhost:8080/"}, Timeout: 10})
	if err != nil || out.ExitCode != 0 || string(out.Stdout) != "hello from web\n" {
		t.Errorf("wget localhost:8080 from the pod's other container = %v, %v", out, err)
	}

	before := podView(t, rt)
	if len(before.pods) != 2 || len(before.ctrs) != 4 {
		t.Fatalf("before the kill: %d pods, %d containers; want 2 and 4", len(before.pods), len(before.ctrs))
	}
	tickLog := filepath.Join(e.LogDir, "web", "ticker.log")
	if !waitFor(5*time.Second, func() bool { return fileSize(tickLog) > 0 }) {
		t.Fatalf("no ticker log at %s", tickLog)
	}
	// The shims, from the PID each wrote in its state directory (one
	// started on standby names no path on its command line).
	var shimsBefore []int
	pidFiles, _ := filepath.Glob(filepath.Join(e.d.State, "c", "*", "shim.pid"))
	for _, f := range pidFiles {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(string(b)); err == nil && syscall.Kill(pid, 0) == nil {
			shimsBefore = append(shimsBefore, pid)
		}
	}
	if len(shimsBefore) != len(allCtrs) {
		t.Errorf("%d shims for %d containers", len(shimsBefore), len(allCtrs))
	}

	killedAt := time.Now()
	e.d.Kill9()
	sizeAtKill := fileSize(tickLog)
	// While berthd is down: logs grow, the host port answers, and the
	// short container exits.
	if !waitFor(3*time.Second, func() bool { return fileSize(tickLog) > sizeAtKill+100 }) {
		t.Errorf("ticker log did not grow while berthd was down: %d -> %d bytes", sizeAtKill, fileSize(tickLog))
	}
	if body, err := httpGet(hostURL); err != nil || body != "hello from web\n" {
		t.Errorf("GET %s while berthd is down = %q, %v", hostURL, body, err)
	}
	for _, pid := range shimsBefore {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("shim %d died with berthd", pid)
		}
	}
	time.Sleep(time.Until(killedAt.Add(5 * time.Second)))
	restartedAt := time.Now()
	e.d.Start()

	after := podView(t, rt)
	for id, p := range before.pods {
		q, ok := after.pods[id]
		switch {
		case !ok:
			t.Errorf("pod %s (%s) gone after the restart", id, p.name)
		case q.state != runtimeapi.PodSandboxState_SANDBOX_READY || q.ip != p.ip || q.ip == "":
			t.Errorf("pod %s after the restart: %v %q, before: %v %q", p.name, q.state, q.ip, p.state, p.ip)
		}
	}
	for id, c := range before.ctrs {
		d, ok := after.ctrs[id]
		if !ok {
			t.Errorf("container %s (%s) gone after the restart", id, c.name)
			continue
		}
		want := runtimeapi.ContainerState_CONTAINER_RUNNING
		if id == short {
			want = runtimeapi.ContainerState_CONTAINER_EXITED
		}
		if d.state != want {
			t.Errorf("container %s after the restart: %v, want %v", c.name, d.state, want)
		}
	}
	if len(after.pods) != 2 || len(after.ctrs) != 4 {
		t.Errorf("after the restart: %d pods, %d containers; want 2 and 4", len(after.pods), len(after.ctrs))
	}
	st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: short})
	if err != nil {
		t.Fatal(err)
	}
	finished := time.Unix(0, st.Status.FinishedAt)
	if st.Status.ExitCode != 7 || st.Status.Reason != "Error" {
		t.Errorf("short container after the restart: exit code %d reason %q, want 7 Error", st.Status.ExitCode, st.Status.Reason)
	}
	if finished.Before(killedAt) || finished.After(restartedAt) {
		t.Errorf("short container finished at %v, want between the kill (%v) and the restart (%v)", finished, killedAt, restartedAt)
	}

	// Exec (sync and streaming) into a container started before the kill.
	out, err = rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: sleeper, Cmd: []string{"sh", "-c", "hostname; exit 3"}, Timeout: 10})
	if err != nil || out.ExitCode != 3 || string(out.Stdout) != "other\n" {
		t.Errorf("ExecSync after the restart = %v, %v", out, err)
	}
	crictl := tool(t, "crictl", "CRICTL")
	stdout, stderr, err := runErr(nil, crictl, "--runtime-endpoint", "unix://"+e.d.CRISocket, "exec", ticker, "cat", "/proc/1/cmdline")
	if err != nil || !strings.Contains(stdout, "pause") {
		// The pod shares one PID namespace: PID 1 is berthd's pause holder.
		t.Errorf("crictl exec after the restart: %v\n%s%s", err, stdout, stderr)
	}

	// Stop and remove after the restart, then nothing is left.
	var ips []string
	for _, p := range after.pods {
		ips = append(ips, p.ip)
	}
	for _, id := range []string{webID, otherID} {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("stop pod after the restart: %v", err)
		}
	}
	st, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ticker})
	if err != nil || st.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Errorf("ticker after its pod stopped: %v, %v", st.GetStatus().GetState(), err)
	}
	for _, id := range []string{webID, otherID} {
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("remove pod after the restart: %v", err)
		}
	}
	if left := e.leftovers([]string{webID, otherID}, allCtrs, ips); len(left) > 0 {
		t.Errorf("left after removing all pods:\n  %s", strings.Join(left, "\n  "))
	}
}

// podState is what a kubelet sees of the pods and containers.
type podState struct {
	pods map[string]struct {
		name  string
		state runtimeapi.PodSandboxState
		ip    string
	}
	ctrs map[string]struct {
		name  string
		state runtimeapi.ContainerState
	}
}

func podView(t *testing.T, rt runtimeapi.RuntimeServiceClient) podState {
	t.Helper()
	ctx := ctxT(t)
	v := podState{pods: map[string]struct {
		name  string
		state runtimeapi.PodSandboxState
		ip    string
	}{}, ctrs: map[string]struct {
		name  string
		state runtimeapi.ContainerState
	}{}}
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		st, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.Id})
		if err != nil {
			t.Fatal(err)
		}
		v.pods[p.Id] = struct {
			name  string
			state runtimeapi.PodSandboxState
			ip    string
		}{p.Metadata.Name, p.State, st.Status.GetNetwork().GetIp()}
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range ctrs.Containers {
		v.ctrs[c.Id] = struct {
			name  string
			state runtimeapi.ContainerState
		}{c.Metadata.Name, c.State}
	}
	return v
}

// TestContainerEventsLifecycle follows GetContainerEvents through one
// container's life: CREATED, STARTED, STOPPED, DELETED, in that order,
// each with the pod's status attached.
func TestContainerEventsLifecycle(t *testing.T) {
	e := newPodEnv(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	podID, podCfg := e.RunPod("events", podOptions{SharedPID: true})
	stream, err := e.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	events := make(chan *runtimeapi.ContainerEventResponse, 64)
	go func() {
		defer close(events)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			events <- ev
		}
	}()
	id := e.RunContainer(podID, podCfg, "ev", "exec sleep 3600", containerOptions{})
	if _, err := e.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	var got []runtimeapi.ContainerEventType
	timeout := time.After(10 * time.Second)
	for len(got) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("event stream ended after %v", got)
			}
			if ev.ContainerId != id {
				continue
			}
			got = append(got, ev.ContainerEventType)
			if ev.PodSandboxStatus.GetId() != podID || ev.CreatedAt == 0 {
				t.Errorf("%v event: pod status %v, created at %d", ev.ContainerEventType, ev.PodSandboxStatus, ev.CreatedAt)
			}
			switch ev.ContainerEventType {
			case runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT:
				if len(ev.ContainersStatuses) != 1 || ev.ContainersStatuses[0].State != runtimeapi.ContainerState_CONTAINER_RUNNING {
					t.Errorf("STARTED event statuses: %v", ev.ContainersStatuses)
				}
			case runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT:
				if len(ev.ContainersStatuses) != 1 || ev.ContainersStatuses[0].State != runtimeapi.ContainerState_CONTAINER_EXITED {
					t.Errorf("STOPPED event statuses: %v", ev.ContainersStatuses)
				}
			}
		case <-timeout:
			t.Fatalf("events of %s: %v, want %v", id, got, want)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("events of %s: %v, want %v", id, got, want)
	}
	if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if left := e.leftovers([]string{podID}, []string{id}, nil); len(left) > 0 {
		t.Errorf("left after removing the pod:\n  %s", strings.Join(left, "\n  "))
	}
}

// TestCNIGCAtStartup: a pod whose record is lost while berthd is down (the
// record removed by hand, as a crash between CNI ADD and the record would
// leave it) still holds an IP lease and a veth; berthd's start-up releases
// them because it no longer knows the pod.
func TestCNIGCAtStartup(t *testing.T) {
	e := newPodEnv(t)
	podID, _ := e.RunPod("lost", podOptions{})
	st, err := e.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	ip := st.Status.GetNetwork().GetIp()
	if !slices.Contains(e.net.Leases(), ip) || len(e.net.Veths()) != 1 {
		t.Fatalf("pod %s: leases %v, veths %v", ip, e.net.Leases(), e.net.Veths())
	}
	e.d.Kill9()
	rec := filepath.Join(e.d.Root, "runtime", "sandboxes", podID)
	if !fileExists(rec) {
		t.Fatalf("no sandbox record at %s (layout changed?)", rec)
	}
	// The pod's /dev/shm is mounted inside its record directory.
	unmountAll(rec)
	if err := os.RemoveAll(rec); err != nil {
		t.Fatal(err)
	}
	e.d.Start()
	if leases := e.net.Leases(); len(leases) != 0 {
		t.Errorf("leases after the start-up GC: %v", leases)
	}
	if veths := e.net.Veths(); len(veths) != 0 {
		t.Errorf("veths after the start-up GC: %v", veths)
	}
	if pods, err := e.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{}); err != nil || len(pods.Items) != 0 {
		t.Errorf("pods after the record was lost: %v, %v", pods, err)
	}
	// Its pinned namespaces and /dev/shm stay: they were the record's to
	// find. The network's parts must all be gone.
	for _, l := range e.leftovers([]string{podID}, nil, []string{ip}) {
		if strings.HasPrefix(l, "iptables") || strings.HasPrefix(l, "veth") || strings.HasPrefix(l, "IPAM") {
			t.Errorf("left after the start-up GC: %s", l)
		}
	}
	b, _ := os.ReadFile(e.d.logPath)
	if !strings.Contains(string(b), "released the networks of unknown pods") {
		t.Errorf("berthd did not log the GC:\n%s", tail(b, 20))
	}
	// The pinned namespaces of the lost pod are the test's to remove now:
	// berthd has no record of them (unmountAll at cleanup).
}
