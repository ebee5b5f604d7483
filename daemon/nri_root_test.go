package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/nritest"
	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestNRIRoot runs real NRI plugin processes against a real berthd with
// real pods: a plugin's adjustment (an environment variable and a bind
// mount) is in the running container, a container that exits on its own is
// reported stopped, the pod's IPs reach the plugins, and a plugin that hangs
// costs a pod NRI's request timeout, no more.
func TestNRIRoot(t *testing.T) {
	testutil.RequireRoot(t, "runs pods with namespaces, mounts, cgroups and CNI")
	binDirs := cniBinDirs(t)
	shim := buildShim(t)
	plugin := nritest.Build(t)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	image := strings.TrimPrefix(reg.URL, "http://") + "/berth/busybox:nri"
	if err := testimage.Push(ctx, testimage.Require(t, testimage.Busybox), image); err != nil {
		t.Fatal(err)
	}
	var rnd [2]byte
	rand.Read(rnd[:])
	bridge := "bn" + hex.EncodeToString(rnd[:])
	subnet := fmt.Sprintf("10.%d.%d.0/24", 200+int(rnd[0])%50, rnd[1])
	t.Cleanup(func() { exec.Command("ip", "link", "del", bridge).Run() })
	cgParent := "/berth-nri-test-" + hex.EncodeToString(rnd[:])
	t.Cleanup(func() {
		// Left only if the test failed half-way.
		dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgParent + "-*")
		for _, d := range dirs {
			os.Remove(filepath.Join(d, "berth-pause"))
			os.Remove(d)
		}
	})

	const timeout = time.Second
	cfg := testConfig(t)
	dir := filepath.Dir(cfg.Root)
	confDir := filepath.Join(dir, "net.d")
	testutil.WriteFiles(t, confDir, map[string]string{"10-test.conflist": fmt.Sprintf(`{"cniVersion":"1.0.0","name":"berth-nri-test","plugins":[
		{"type":"bridge","bridge":%q,"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":%q}]]}}]}`, bridge, filepath.Join(dir, "ipam"), subnet)})
	cfg.CNI.ConfDir, cfg.CNI.BinDirs, cfg.Runtime.ShimBinary = confDir, binDirs, shim
	cfg.NRI.PluginRequestTimeout = timeout
	start(t, cfg)
	rt, images := criClients(t, cfg.CRISocket())
	if _, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}}); err != nil {
		t.Fatal(err)
	}

	shared := filepath.Join(dir, "from-plugin")
	testutil.WriteFiles(t, shared, map[string]string{"note": "mounted by an nri plugin\n"})
	p := nritest.Start(t, plugin, cfg.NRI.SocketPath, "-env", "NRI_ADDED=yes", "-mount", shared+":/nri")
	p.WaitFor("Synchronize", nil)

	var pods []string
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, id := range pods {
			rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
		}
	})
	runPod := func(name string) (string, *runtimeapi.PodSandboxConfig) {
		t.Helper()
		pc := &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "nri", Uid: "uid-" + name},
			// A cgroup of each pod's own, as the kubelet gives.
			Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: cgParent + "-" + name},
		}
		resp, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pc})
		if err != nil {
			t.Fatal(err)
		}
		pods = append(pods, resp.PodSandboxId)
		return resp.PodSandboxId, pc
	}
	runContainer := func(pod string, pc *runtimeapi.PodSandboxConfig, name string, cmd ...string) string {
		t.Helper()
		resp, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod, SandboxConfig: pc, Config: &runtimeapi.ContainerConfig{
			Metadata: &runtimeapi.ContainerMetadata{Name: name}, Image: &runtimeapi.ImageSpec{Image: image}, Command: cmd,
		}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatal(err)
		}
		return resp.ContainerId
	}

	pod, pc := runPod("adjusted")
	ev := p.WaitFor("RunPodSandbox", func(e nritest.Event) bool { return e.Pod == pod })
	_, ipnet, _ := net.ParseCIDR(subnet)
	if len(ev.IPs) != 1 || !ipnet.Contains(net.ParseIP(ev.IPs[0])) {
		t.Errorf("the plugin saw pod IPs %q, want one in %s", ev.IPs, subnet)
	}
	ctr := runContainer(pod, pc, "app", "sleep", "1000")
	out, err := rt.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: ctr, Cmd: []string{"sh", "-c", "echo $NRI_ADDED; cat /nri/note"}, Timeout: 10})
	if err != nil || string(out.Stdout) != "yes\nmounted by an nri plugin\n" {
		t.Errorf("the plugin's adjustment in the container: %q %q, %v", out.GetStdout(), out.GetStderr(), err)
	}

	// A container that exits on its own is reported stopped, with no
	// StopContainer RPC.
	quitter := runContainer(pod, pc, "quitter", "sh", "-c", "exit 3")
	p.WaitFor("StopContainer", func(e nritest.Event) bool { return e.Container == quitter && e.State == "CONTAINER_STOPPED" })

	// A second plugin that hangs in RunPodSandbox: the pod waits for it
	// once, for the request timeout; then it is dropped and the first
	// plugin goes on seeing everything.
	hung := nritest.Start(t, plugin, cfg.NRI.SocketPath, "-idx", "10", "-name", "hangs", "-hang", "RunPodSandbox")
	hung.WaitFor("Synchronize", nil)
	begin := time.Now()
	slow, _ := runPod("slow")
	if took := time.Since(begin); took < timeout || took > timeout+10*time.Second {
		t.Errorf("pod with a hung plugin took %v, want about the %v request timeout", took, timeout)
	}
	hung.WaitFor("RunPodSandbox", func(e nritest.Event) bool { return e.Pod == slow })
	begin = time.Now()
	fast, _ := runPod("fast")
	if took := time.Since(begin); took >= timeout {
		t.Errorf("pod after the hung plugin was dropped took %v, want less than %v", took, timeout)
	}
	p.WaitFor("RunPodSandbox", func(e nritest.Event) bool { return e.Pod == fast })

	if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
		t.Fatal(err)
	}
	p.WaitFor("RemovePodSandbox", func(e nritest.Event) bool { return e.Pod == pod })
	var got []string
	for _, e := range p.Events() {
		if e.Pod == pod && e.Container == ctr {
			got = append(got, e.Event)
		}
	}
	want := []string{"CreateContainer", "PostCreateContainer", "StartContainer", "PostStartContainer", "StopContainer", "RemoveContainer"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("events of container %s = %q, want %q", ctr, got, want)
	}
}
