package daemon

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

var shim shimbuild.Once

// TestMain removes the shim buildShim built, if a test asked for one.
func TestMain(m *testing.M) {
	code := m.Run()
	shim.Remove()
	os.Exit(code)
}

// buildShim builds berth-shim (pure Go) and the berth-runc beside it (cgo,
// seccomp) once per test binary, as `make build` does; only the root tests
// that run containers pay for it.
func buildShim(t *testing.T) string {
	t.Helper()
	return shim.Path(t)
}

// cniBinDirs returns plugin directories holding bridge, host-local,
// loopback and portmap: the ones `make` builds, else Debian's.
func cniBinDirs(t *testing.T) []string {
	t.Helper()
	for _, d := range []string{"../_output/cni/bin", "/opt/cni/bin", "/usr/lib/cni"} {
		ok := true
		for _, p := range []string{"bridge", "host-local", "loopback", "portmap"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			abs, err := filepath.Abs(d)
			if err != nil {
				t.Fatal(err)
			}
			return []string{abs}
		}
	}
	testutil.Missing(t, "no CNI plugins (bridge, host-local, loopback, portmap): run `make build` or set BERTH_CNI_BIN")
	return nil
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// TestPodLifecycleRoot runs a real pod (pinned namespaces, CNI bridge with a
// host port) with a real container (overlay rootfs, shim, cgroup) through
// berthd's CRI socket, as the kubelet would, and checks that removing the
// pod leaves no mount, netns, IP lease, veth or cgroup behind.
func TestPodLifecycleRoot(t *testing.T) {
	testutil.RequireRoot(t, "runs pods with namespaces, mounts, cgroups and CNI")
	binDirs := cniBinDirs(t)
	shim := buildShim(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	busybox := testimage.Require(t, testimage.Busybox)
	image := strings.TrimPrefix(reg.URL, "http://") + "/berth/busybox:1"
	if err := testimage.Push(ctx, busybox, image); err != nil {
		t.Fatal(err)
	}

	// A bridge and subnet of this test's own, removed at the end.
	var rnd [2]byte
	rand.Read(rnd[:])
	bridge := "bt" + hex.EncodeToString(rnd[:])
	subnet := fmt.Sprintf("10.%d.%d.0/24", 200+int(rnd[0])%50, rnd[1])
	t.Cleanup(func() { exec.Command("ip", "link", "del", bridge).Run() })
	cgParent := "/berth-test-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		for _, c := range []string{"memory", "cpu,cpuacct", "pids", "devices", "freezer", "blkio", "cpuset"} {
			os.Remove(filepath.Join("/sys/fs/cgroup", c, cgParent))
		}
	})

	cfg := testConfig(t)
	dir := filepath.Dir(cfg.Root)
	ipamDir := filepath.Join(dir, "ipam")
	confDir := filepath.Join(dir, "net.d")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"berth-test","plugins":[
		{"type":"bridge","bridge":%q,"isGateway":true,"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}},
		{"type":"portmap","capabilities":{"portMappings":true}}]}`, bridge, ipamDir, subnet)
	if err := os.WriteFile(filepath.Join(confDir, "10-test.conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg.CNI.ConfDir, cfg.CNI.BinDirs, cfg.Runtime.ShimBinary = confDir, binDirs, shim
	start(t, cfg)
	rt, images := criClients(t, cfg.CRISocket())

	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Status.Conditions {
		if !c.Status {
			t.Fatalf("condition %s not ready: %s %s", c.Type, c.Reason, c.Message)
		}
	}
	rc, err := rt.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Errorf("RuntimeConfig = %v, %v; want cgroupfs", rc, err)
	}
	if _, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatal(err)
	}

	hostPort := freePort(t)
	logDir := filepath.Join(dir, "logs")
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "test", Uid: "uid-web"},
		Hostname:     "webhost",
		LogDirectory: logDir,
		Labels:       map[string]string{"app": "web"},
		PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 8080, HostPort: hostPort, HostIp: "127.0.0.1"}},
		Linux:        &runtimeapi.LinuxPodSandboxConfig{CgroupParent: cgParent},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	ps, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	_, ipnet, _ := net.ParseCIDR(subnet)
	podIP := ps.Status.Network.GetIp()
	if ip := net.ParseIP(podIP); ip == nil || !ipnet.Contains(ip) {
		t.Fatalf("pod IP %q not in %s", podIP, subnet)
	}
	if ps.Status.State != runtimeapi.PodSandboxState_SANDBOX_READY || ps.Status.Labels["app"] != "web" {
		t.Errorf("pod status = %v", ps.Status)
	}

	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from pod\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A tmpfs under a directory mounted recursively read-only: writes to
	// the submount must fail too. Status advertises rro only if this works.
	rroDir := filepath.Join(dir, "rro")
	if err := os.MkdirAll(filepath.Join(rroDir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command("mount", "-t", "tmpfs", "rrotest", filepath.Join(rroDir, "sub")).Run(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { exec.Command("umount", filepath.Join(rroDir, "sub")).Run() })
	var rroAdvertised bool
	for _, h := range st.RuntimeHandlers {
		rroAdvertised = rroAdvertised || h.GetFeatures().GetRecursiveReadOnlyMounts()
	}
	ctrCfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "httpd"},
		Image:    &runtimeapi.ImageSpec{Image: image},
		Command:  []string{"sh", "-c", "echo started as $(id -u) on $(hostname) with $GREETING; exec httpd -f -p 8080 -h /www"},
		Envs:     []*runtimeapi.KeyValue{{Key: "GREETING", Value: []byte("hi")}},
		Mounts: []*runtimeapi.Mount{
			{ContainerPath: "/www", HostPath: www, Readonly: true},
			{ContainerPath: "/rro", HostPath: rroDir, Readonly: true, RecursiveReadOnly: rroAdvertised},
		},
		LogPath: "httpd.log",
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}},
		},
	}
	ctr, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, Config: ctrCfg, SandboxConfig: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
		t.Fatal(err)
	}

	// The container's first line reaches the CRI log.
	logPath := filepath.Join(logDir, "httpd.log")
	line := waitForLogLine(t, logPath, "started as")
	if !strings.Contains(line, " stdout F started as 0 on webhost with hi") {
		t.Errorf("log line = %q", line)
	}

	cs, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	s := cs.Status
	if s.State != runtimeapi.ContainerState_CONTAINER_RUNNING || s.LogPath != logPath || s.ImageId == "" || s.StartedAt == 0 ||
		s.User.GetLinux().GetUid() != 0 || s.Resources.GetLinux().GetMemoryLimitInBytes() != 64<<20 || len(s.Mounts) != 2 {
		t.Errorf("container status = %v", s)
	}

	out, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, Timeout: 10})
	if err != nil || string(out.Stdout) != "out\n" || string(out.Stderr) != "err\n" || out.ExitCode != 3 {
		t.Errorf("ExecSync = %v, %v", out, err)
	}
	if _, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"sleep", "30"}, Timeout: 1}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync past its timeout: %v, want DeadlineExceeded", err)
	}

	if rroAdvertised {
		out, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr.ContainerId, Cmd: []string{"touch", "/rro/sub/x"}, Timeout: 10})
		if err != nil || out.ExitCode == 0 || !strings.Contains(string(out.Stderr), "Read-only file system") {
			t.Errorf("write into a submount of a recursive read-only mount: %v, %v; want Read-only file system", out, err)
		}
	} else {
		t.Log("recursive read-only mounts not advertised on this kernel")
	}

	for _, url := range []string{"http://" + net.JoinHostPort(podIP, "8080") + "/", fmt.Sprintf("http://127.0.0.1:%d/", hostPort)} {
		if body := httpGet(t, url); body != "hello from pod\n" {
			t.Errorf("GET %s = %q", url, body)
		}
	}

	// Streaming: crictl speaks to the URLs the RPCs return.
	if crictl, err := filepath.Abs("../_output/tools/crictl"); err == nil {
		if _, err := os.Stat(crictl); err == nil {
			cmd := exec.CommandContext(ctx, crictl, "--runtime-endpoint", "unix://"+cfg.CRISocket(), "exec", ctr.ContainerId, "sh", "-c", "cat /www/index.html; exit 5")
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), "hello from pod") || !strings.Contains(string(out), "exit code 5") || err == nil {
				t.Errorf("crictl exec: %v\n%s", err, out)
			}
		}
	}

	stats, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: ctr.ContainerId})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Stats.Cpu.GetUsageCoreNanoSeconds().GetValue() == 0 || stats.Stats.Memory.GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("container stats = %v", stats.Stats)
	}
	list, err := rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: pod.PodSandboxId}})
	if err != nil || len(list.Stats) != 1 {
		t.Errorf("ListContainerStats = %v, %v", list, err)
	}
	pstats, err := rt.PodSandboxStats(ctx, &runtimeapi.PodSandboxStatsRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil || len(pstats.Stats.GetLinux().GetContainers()) != 1 {
		t.Errorf("PodSandboxStats = %v, %v", pstats, err)
	}

	if _, err := rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ctr.ContainerId, Timeout: 2}); err != nil {
		t.Fatal(err)
	}
	cs, err = rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId})
	if err != nil || cs.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || cs.Status.FinishedAt < cs.Status.StartedAt || cs.Status.Reason == "" {
		t.Errorf("after stop: %v, %v", cs.GetStatus(), err)
	}
	for range 2 {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: ctr.ContainerId}); status.Code(err) != codes.NotFound {
		t.Errorf("container status after pod removal: %v, want NotFound", err)
	}

	// The test's own tmpfs goes first: it is not berthd's to remove.
	if out, err := exec.Command("umount", filepath.Join(rroDir, "sub")).CombinedOutput(); err != nil {
		t.Errorf("umount test tmpfs: %v %s", err, out)
	}
	// Nothing left: mounts under the daemon's dirs, pinned namespaces, IP
	// leases, veths on the bridge, the container's cgroup.
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, dir) {
			t.Errorf("mount left: %s", l)
		}
	}
	for _, kind := range []string{"net", "ipc", "uts"} {
		if ents, _ := os.ReadDir(filepath.Join(cfg.State, "ns", kind)); len(ents) != 0 {
			t.Errorf("pinned %s namespaces left: %v", kind, ents)
		}
	}
	leases, _ := os.ReadDir(filepath.Join(ipamDir, "berth-test"))
	for _, e := range leases {
		if net.ParseIP(e.Name()) != nil {
			t.Errorf("IP lease left: %s", e.Name())
		}
	}
	if ports, _ := os.ReadDir(filepath.Join("/sys/class/net", bridge, "brif")); len(ports) != 0 {
		t.Errorf("veths left on %s: %v", bridge, ports)
	}
	if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", cgParent, ctr.ContainerId)); !os.IsNotExist(err) {
		t.Errorf("container cgroup left (stat: %v)", err)
	}
	if snaps, _ := os.ReadDir(filepath.Join(cfg.Root, "snapshots")); slices.ContainsFunc(snaps, func(e os.DirEntry) bool { return strings.HasPrefix(e.Name(), ctr.ContainerId) }) {
		t.Errorf("snapshot left in %s", filepath.Join(cfg.Root, "snapshots"))
	}
}

// waitForLogLine waits for a CRI log line containing want.
func waitForLogLine(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if f, err := os.Open(path); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.Contains(sc.Text(), want) {
					f.Close()
					return sc.Text()
				}
			}
			f.Close()
		}
		time.Sleep(50 * time.Millisecond)
	}
	b, _ := os.ReadFile(path)
	t.Fatalf("no line with %q in %s:\n%s", want, path, b)
	return ""
}

// httpGet fetches url, retrying while the server starts.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for range 50 {
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return string(b)
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("GET %s: %v", url, lastErr)
	return ""
}
