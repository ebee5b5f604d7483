package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/testimage"
)

// The pods of the kubelet suite. The containers trap SIGTERM (a shell as
// PID 1 would ignore it) so that a stop takes less than the grace period.
const (
	webManifest = `apiVersion: v1
kind: Pod
metadata: {name: web, namespace: default}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: web
    image: %[1]s
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www; echo hello-from-web >/www/index.html; echo web up; httpd -f -p 8080 -h /www & wait"]
    ports: [{containerPort: 8080, hostPort: %[2]d}]
    readinessProbe: {httpGet: {path: /index.html, port: 8080}, periodSeconds: 1}
    livenessProbe: {exec: {command: [cat, /www/index.html]}, periodSeconds: 3, timeoutSeconds: 10}
  - name: side
    image: %[1]s
    stdin: true
    command: ["sh", "-c", "trap 'exit 0' TERM; echo side up; while read l; do echo \"got $l\"; done"]
`
	// probe-fail's liveness probe always fails: the kubelet kills and
	// restarts it.
	crashManifest = `apiVersion: v1
kind: Pod
metadata: {name: crash, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: probe-fail
    image: %[1]s
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]
    livenessProbe: {exec: {command: ["false"]}, periodSeconds: 1, failureThreshold: 1}
`
	// chatty writes about 40 KiB/s: over containerLogMaxSize at every
	// check of the kubelet's log manager.
	chattyManifest = `apiVersion: v1
kind: Pod
metadata: {name: chatty, namespace: default}
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: chatty
    image: %[1]s
    command: ["sh", "-c", "trap 'exit 0' TERM; i=0; while true; do i=$((i+1)); echo \"line $i 0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789\"; usleep 2500; done"]
`
)

// TestKubelet runs a real kubelet (standalone, static pods, cgroupfs) on
// berthd: what a node does, end to end. The scenarios share one berthd and
// run in order; the kubelet restarts between the groups that need other
// settings (feature gates, image GC thresholds).
func TestKubelet(t *testing.T) {
	e := newPodEnv(t)
	_, images := e.d.CRI()
	regHost, _, _ := strings.Cut(e.Image, "/")
	// An image no pod uses: the kubelet's image GC must remove it.
	victim := push(t, mustImage(t, testimage.NonRoot), regHost+"/berth/gc-victim:1")
	if _, err := images.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: victim.Ref}}); err != nil {
		t.Fatal(err)
	}
	k := newKubelet(t, e.d, e.CgParent)
	t.Cleanup(func() {
		// Kept with the kubelet's log, which a failed test leaves.
		if t.Failed() {
			os.WriteFile(filepath.Join(k.Dir, "berthd.log"), []byte(e.d.Log()), 0o644)
		}
	})
	hostPort := freePort(t)
	web, crash, chatty := k.PodName("web"), k.PodName("crash"), k.PodName("chatty")
	// Every sandbox and container berthd ever had, for the leak check.
	seen := newSeenIDs()

	k.Start(e.d, kubeletOptions{Extra: []string{
		`containerLogMaxSize: "16Ki"`, `containerLogMaxFiles: 3`, `containerLogMonitorInterval: 3s`,
	}})
	k.WriteManifest("web", fmt.Sprintf(webManifest, e.Image, hostPort))
	k.WriteManifest("crash", fmt.Sprintf(crashManifest, e.Image))
	k.WriteManifest("chatty", fmt.Sprintf(chattyManifest, e.Image))

	var webPod *kubePod
	ok := t.Run("static pod with probes and a hostPort is Ready", func(t *testing.T) {
		webPod = k.WaitPod(web, 2*time.Minute, "Running and Ready", func(p *kubePod) bool {
			return p != nil && p.Status.Phase == "Running" && p.Ready()
		})
		for _, c := range []string{"web", "side"} {
			if cs := webPod.Container(c); cs == nil || !cs.Ready || cs.State["running"] == nil {
				t.Errorf("container %s: %+v", c, cs)
			}
		}
		body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort))
		if err != nil || !strings.Contains(body, "hello-from-web") {
			t.Errorf("hostPort %d: %q, %v", hostPort, body, err)
		}
		seen.add(t, e)
	})
	if !ok {
		t.FailNow()
	}

	t.Run("logs, exec, attach and port-forward through the kubelet's API", func(t *testing.T) {
		if out, err := k.Get(fmt.Sprintf("/containerLogs/default/%s/side", web)); err != nil || !strings.Contains(out, "side up") {
			t.Errorf("containerLogs: %q, %v", out, err)
		}
		if out, err := k.Run(web, "web", "cat", "/www/index.html"); err != nil || strings.TrimSpace(out) != "hello-from-web" {
			t.Errorf("run: %q, %v", out, err)
		}
		stdout, stderr, err := k.Exec(web, "web", "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 3")
		if stdout != "to-stdout\n" || stderr != "to-stderr\n" || err == nil || !strings.Contains(err.Error(), "3") {
			t.Errorf("exec: stdout %q stderr %q err %v; want the output and exit code 3", stdout, stderr, err)
		}
		if err := k.Attach(web, "side", "ping-through-attach\n", "got ping-through-attach", 20*time.Second); err != nil {
			t.Error(err)
		}
		if out, err := k.Get(fmt.Sprintf("/containerLogs/default/%s/side", web)); err != nil || !strings.Contains(out, "got ping-through-attach") {
			t.Errorf("the attached input's echo is not in the log: %q, %v", out, err)
		}
		out, err := k.PortForward(web, 8080, "GET /index.html HTTP/1.0\r\n\r\n")
		if err != nil || !strings.Contains(out, "hello-from-web") {
			t.Errorf("port-forward: %q, %v", out, err)
		}
	})

	t.Run("a failing liveness probe restarts the container", func(t *testing.T) {
		p := k.WaitPod(crash, 2*time.Minute, "restarted twice", func(p *kubePod) bool {
			c := p.Container("probe-fail")
			return c != nil && c.RestartCount >= 2
		})
		seen.add(t, e)
		if !strings.Contains(k.Log(), "failed liveness probe, will be restarted") {
			t.Errorf("the kubelet's log does not say the liveness probe failed; status %+v", p.Container("probe-fail"))
		}
	})

	t.Run("stats summary (kubelet's default stats)", func(t *testing.T) {
		checkSummary(t, k, web, false)
	})

	t.Run("container log rotation through ReopenContainerLog", func(t *testing.T) {
		p := k.WaitPod(chatty, time.Minute, "running", func(p *kubePod) bool {
			return p != nil && p.Status.Phase == "Running"
		})
		dir := filepath.Join(k.PodLogs, fmt.Sprintf("default_%s_%s", chatty, p.Metadata.UID), "chatty")
		var rotated []string
		if !waitFor(45*time.Second, func() bool {
			rotated, _ = filepath.Glob(filepath.Join(dir, "0.log.*"))
			return len(rotated) >= 2
		}) {
			ents, _ := os.ReadDir(dir)
			t.Fatalf("no rotated logs in %s after 45s: %v", dir, ents)
		}
		if !strings.Contains(e.d.Log(), "ReopenContainerLog") {
			t.Error("berthd never served ReopenContainerLog")
		}
		// The shim writes to the new file: it grows after the rotation.
		cur := filepath.Join(dir, "0.log")
		size := fileSize(cur)
		if !waitFor(10*time.Second, func() bool { return fileSize(cur) > size || fileSize(cur) < size }) {
			t.Errorf("%s does not change after rotation (size %d)", cur, size)
		}
		if b, _ := os.ReadFile(cur); !strings.Contains(string(b), "stdout F line ") {
			t.Errorf("current log has no CRI lines: %.200q", b)
		}
		if strings.Contains(k.Log(), "Failed to rotate log for container") {
			t.Error("the kubelet failed to rotate a log")
		}
		// Older rotations are compressed, at most containerLogMaxFiles in all.
		if all, _ := filepath.Glob(filepath.Join(dir, "0.log*")); len(all) > 3 {
			t.Errorf("%d log files, containerLogMaxFiles is 3: %v", len(all), all)
		}
		if out, err := k.Get(fmt.Sprintf("/containerLogs/default/%s/chatty?tailLines=1", chatty)); err != nil || !strings.HasPrefix(out, "line ") {
			t.Errorf("containerLogs after rotation: %q, %v", out, err)
		}
	})

	t.Run("kill -9 of berthd: same containers, no restarts, still Ready", func(t *testing.T) {
		before := k.Pods()[web]
		e.d.Kill9()
		e.d.Start()
		// Several kubelet syncs and probe rounds against the new berthd.
		time.Sleep(8 * time.Second)
		after := k.WaitPod(web, time.Minute, "Ready", func(p *kubePod) bool { return p != nil && p.Ready() })
		for _, c := range []string{"web", "side"} {
			b, a := before.Container(c), after.Container(c)
			if a.ContainerID != b.ContainerID || a.RestartCount != b.RestartCount {
				t.Errorf("container %s: before %s restarts %d, after %s restarts %d", c, b.ContainerID, b.RestartCount, a.ContainerID, a.RestartCount)
			}
		}
		if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort)); err != nil || !strings.Contains(body, "hello-from-web") {
			t.Errorf("hostPort after the restart: %q, %v", body, err)
		}
	})

	t.Run("removing the manifest stops, detaches and garbage-collects the pod", func(t *testing.T) {
		seen.add(t, e)
		sb := e.sandboxOf(t, web)
		if sb == nil {
			t.Fatal("no sandbox for the web pod")
		}
		ip := e.sandboxIP(t, sb.Id)
		removed := time.Now()
		k.RemoveManifest("web")
		if !waitFor(30*time.Second, func() bool {
			st := e.sandboxState(t, sb.Id)
			return st == runtimeapi.PodSandboxState_SANDBOX_NOTREADY || st == -1
		}) {
			t.Fatalf("sandbox %s still ready 30s after the manifest went", sb.Id)
		}
		stopped := time.Since(removed)
		if stopped > 15*time.Second {
			t.Errorf("the pod took %v to stop; its grace period is 10s", stopped)
		}
		if slices.Contains(e.net.Leases(), ip) {
			t.Errorf("IP %s still leased after the sandbox stopped", ip)
		}
		// The kubelet's container GC (every minute) removes the sandbox.
		if !waitFor(100*time.Second, func() bool { return e.sandboxState(t, sb.Id) == -1 }) {
			t.Errorf("the kubelet did not remove sandbox %s within 100s", sb.Id)
		}
		t.Logf("stopped after %v, removed after %v", stopped, time.Since(removed))
		if !strings.Contains(e.d.Log(), "RemovePodSandbox") {
			t.Error("berthd never served RemovePodSandbox")
		}
	})

	// Second kubelet: EventedPLEG and the CRI stats.
	k.Stop()
	k.Start(e.d, kubeletOptions{FeatureGates: map[string]bool{"EventedPLEG": true, "PodAndContainerStatsFromCRI": true}})
	k.WriteManifest("web", fmt.Sprintf(webManifest, e.Image, hostPort))

	t.Run("EventedPLEG: the pod starts and container events reach the kubelet", func(t *testing.T) {
		k.WaitPod(web, 2*time.Minute, "Running and Ready", func(p *kubePod) bool {
			return p != nil && p.Status.Phase == "Running" && p.Ready()
		})
		seen.add(t, e)
		// side ends (it traps SIGTERM): its CONTAINER_STOPPED event makes
		// the kubelet relist the pod at once and restart it.
		before := k.Pods()[web].Container("side").RestartCount
		if out, err := k.Run(web, "side", "kill", "1"); err != nil {
			t.Fatalf("kill side's init: %q, %v", out, err)
		}
		k.WaitPod(web, time.Minute, "side restarted", func(p *kubePod) bool {
			c := p.Container("side")
			return c != nil && c.RestartCount > before && c.State["running"] != nil
		})
		if !strings.Contains(k.Log(), "Evented PLEG: requested pod relist after container termination") {
			t.Error("the kubelet did not relist on the container-stopped event")
		}
		if n := k.Metric("kubelet_evented_pleg_connection_success_count"); n < 1 {
			t.Errorf("evented PLEG connections = %v, want at least 1", n)
		}
		if n := k.Metric("kubelet_evented_pleg_connection_error_count"); n > 0 {
			t.Errorf("evented PLEG connection errors = %v", n)
		}
		if n := k.Metric("kubelet_evented_pleg_connection_latency_seconds_count"); n < 1 {
			t.Errorf("evented PLEG events received = %v, want some", n)
		}
		if strings.Contains(k.Log(), "nil PodSandboxStatus") {
			t.Error("berthd sent container events without the pod's status")
		}
	})

	t.Run("stats summary (PodAndContainerStatsFromCRI)", func(t *testing.T) {
		// Traffic through the pod's interface for rx/tx.
		for range 5 {
			httpGet(fmt.Sprintf("http://127.0.0.1:%d/index.html", hostPort))
		}
		checkSummary(t, k, web, true)
	})

	// Third kubelet: image GC. Disk pressure on the image filesystem (a
	// threshold no disk meets) makes the eviction manager call the image
	// GC every 10 s instead of every 5 minutes. (A minimum age of 0 means
	// the default, 2 minutes.)
	k.Stop()
	k.Start(e.d, kubeletOptions{Extra: []string{
		`imageGCHighThresholdPercent: 1`, `imageGCLowThresholdPercent: 0`, `imageMinimumGCAge: 1s`,
		`evictionHard: {imagefs.available: "99%", nodefs.available: "1%", memory.available: "1Mi"}`,
	}})
	t.Run("image GC removes unused images through the CRI, never one in use", func(t *testing.T) {
		if !waitFor(90*time.Second, func() bool { return imageStatus(t, images, victim.Ref) == nil }) {
			t.Fatalf("the kubelet did not remove %s within 90s", victim.Ref)
		}
		if imageStatus(t, images, e.Image) == nil {
			t.Errorf("image %s, in use by running pods, was removed", e.Image)
		}
		if p := k.Pods()[web]; p == nil || !p.Ready() {
			t.Errorf("web pod after the image GC: %+v", p)
		}
	})

	// What the kubelet complained about, once per message (-v shows it).
	t.Logf("kubelet errors and warnings, once each:\n%s", distinctKlog(k.Log()))

	t.Run("zero leaks once every pod is gone", func(t *testing.T) {
		seen.add(t, e)
		for _, m := range []string{"web", "crash", "chatty"} {
			k.RemoveManifest(m)
		}
		for _, p := range []string{web, crash, chatty} {
			k.WaitPod(p, time.Minute, "gone", func(p *kubePod) bool { return p == nil })
		}
		if !waitFor(100*time.Second, func() bool { return len(e.sandboxes(t)) == 0 }) {
			t.Errorf("sandboxes left 100s after the manifests went: %v", e.sandboxes(t))
		}
		k.Stop()
		k.removeCgroups()
		if left := e.leftovers(seen.pods, seen.ctrs, seen.ips); len(left) > 0 {
			t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
		}
	})
}

// checkSummary asserts /stats/summary's figures for pod: CPU and memory of
// the pod and of each container, rootfs and log usage, and (withNetwork)
// the pod's network counters.
func checkSummary(t *testing.T, k *kubelet, pod string, withNetwork bool) {
	t.Helper()
	var last string
	ok := waitFor(45*time.Second, func() bool {
		s, err := k.Summary()
		if err != nil {
			last = err.Error()
			return false
		}
		var problems []string
		if fs := s.Node.Runtime.ImageFs; fs == nil || fs.CapacityBytes == nil || *fs.CapacityBytes == 0 || fs.UsedBytes == nil || *fs.UsedBytes == 0 {
			problems = append(problems, "node imageFs without capacity or usage")
		}
		found := false
		for _, p := range s.Pods {
			if p.PodRef.Name != pod {
				continue
			}
			found = true
			if p.CPU == nil || p.CPU.UsageNanoCores == nil || *p.CPU.UsageNanoCores == 0 {
				problems = append(problems, "pod cpu")
			}
			if p.Memory == nil || p.Memory.WorkingSetBytes == nil || *p.Memory.WorkingSetBytes == 0 {
				problems = append(problems, "pod memory")
			}
			if withNetwork {
				n := p.Network
				if n == nil || n.RxBytes == nil || n.TxBytes == nil || *n.RxBytes == 0 || *n.TxBytes == 0 {
					problems = append(problems, "pod network rx/tx")
				}
			}
			if len(p.Containers) != 2 {
				problems = append(problems, fmt.Sprintf("%d containers", len(p.Containers)))
			}
			for _, c := range p.Containers {
				if c.CPU == nil || c.CPU.UsageCoreNanoSeconds == nil || *c.CPU.UsageCoreNanoSeconds == 0 {
					problems = append(problems, c.Name+" cpu")
				}
				if c.Memory == nil || c.Memory.WorkingSetBytes == nil || *c.Memory.WorkingSetBytes == 0 {
					problems = append(problems, c.Name+" memory")
				}
				if c.Rootfs == nil || c.Rootfs.UsedBytes == nil || *c.Rootfs.UsedBytes == 0 {
					problems = append(problems, c.Name+" rootfs")
				}
				if c.Logs == nil || c.Logs.UsedBytes == nil || *c.Logs.UsedBytes == 0 {
					problems = append(problems, c.Name+" logs")
				}
			}
		}
		if !found {
			problems = append(problems, "pod not listed")
		}
		last = strings.Join(problems, ", ")
		return len(problems) == 0
	})
	if !ok {
		body, _ := k.Get("/stats/summary")
		t.Errorf("stats summary still lacks: %s\n%s", last, body)
	}
}

// seenIDs collects every sandbox and container ID and pod IP berthd had
// during a test, for the final leak check.
type seenIDs struct{ pods, ctrs, ips []string }

func newSeenIDs() *seenIDs { return &seenIDs{} }

func (s *seenIDs) add(t *testing.T, e *podEnv) {
	for _, sb := range e.sandboxes(t) {
		if !slices.Contains(s.pods, sb.Id) {
			s.pods = append(s.pods, sb.Id)
			if ip := e.sandboxIP(t, sb.Id); ip != "" {
				s.ips = append(s.ips, ip)
			}
		}
	}
	cs, err := e.rt.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs.Containers {
		if !slices.Contains(s.ctrs, c.Id) {
			s.ctrs = append(s.ctrs, c.Id)
		}
	}
}

func (e *podEnv) sandboxes(t testing.TB) []*runtimeapi.PodSandbox {
	t.Helper()
	r, err := e.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Items
}

// sandboxOf returns the newest ready sandbox of the pod named name.
func (e *podEnv) sandboxOf(t *testing.T, name string) *runtimeapi.PodSandbox {
	var out *runtimeapi.PodSandbox
	for _, sb := range e.sandboxes(t) {
		if sb.Metadata.Name == name && sb.State == runtimeapi.PodSandboxState_SANDBOX_READY && (out == nil || sb.CreatedAt > out.CreatedAt) {
			out = sb
		}
	}
	return out
}

// sandboxState is the sandbox's state, -1 once it is gone.
func (e *podEnv) sandboxState(t *testing.T, id string) runtimeapi.PodSandboxState {
	for _, sb := range e.sandboxes(t) {
		if sb.Id == id {
			return sb.State
		}
	}
	return -1
}

func (e *podEnv) sandboxIP(t *testing.T, id string) string {
	st, err := e.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		return ""
	}
	return st.GetStatus().GetNetwork().GetIp()
}

// imageStatus returns the image, nil when berthd does not have it.
func imageStatus(t *testing.T, images runtimeapi.ImageServiceClient, ref string) *runtimeapi.Image {
	t.Helper()
	r, err := images.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Image
}

// distinctKlog returns the kubelet's error and warning messages (the
// quoted text after the source location), each once with its count and
// its first occurrence.
func distinctKlog(log string) string {
	counts := map[string]int{}
	first := map[string]string{}
	var order []string
	for _, l := range strings.Split(log, "\n") {
		if len(l) < 2 || (l[0] != 'E' && l[0] != 'W') || l[1] < '0' || l[1] > '9' {
			continue
		}
		_, msg, ok := strings.Cut(l, "] ")
		if !ok {
			continue
		}
		if i := strings.Index(msg[1:], "\""); msg[0] == '"' && i >= 0 {
			msg = msg[:i+2]
		}
		key := l[:1] + " " + msg
		if counts[key] == 0 {
			order = append(order, key)
			first[key] = l
		}
		counts[key]++
	}
	var b strings.Builder
	for _, k := range order {
		l := first[k]
		if len(l) > 600 {
			l = l[:600] + "..."
		}
		fmt.Fprintf(&b, "%4d× %s\n      %s\n", counts[k], k, l)
	}
	return b.String()
}
