package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// testNetwork is a CNI bridge network of one test: its own bridge, subnet,
// network name and IPAM lease directory, written by hack/cni-conf.sh as a
// node would have it (bridge with ipMasq, portmap, firewall).
type testNetwork struct {
	ConfDir string
	BinDir  string
	// DataDir holds host-local's leases, one file per IP under <Name>/.
	DataDir string
	Name    string
	Bridge  string
	Subnet  *net.IPNet
}

var (
	cniBinOnce sync.Once
	cniBin     string
	cniBinErr  error
)

// cniPlugins returns a directory with the pinned CNI plugins: BERTH_CNI_BIN
// (the Makefile's), the ones `make` built, else builds them once.
func cniPlugins(t testing.TB) string {
	t.Helper()
	cniBinOnce.Do(func() {
		if d := os.Getenv("BERTH_CNI_BIN"); d != "" {
			// berthd runs elsewhere: a relative dir means the repo's.
			if !filepath.IsAbs(d) {
				d = filepath.Join(repoRoot(t), d)
			}
			cniBin = d
			return
		}
		if d := filepath.Join(repoRoot(t), "_output", "cni", "bin"); fileExists(filepath.Join(d, "bridge")) {
			cniBin = d
			return
		}
		cniBin, cniBinErr = os.MkdirTemp("", "be2e-cni-")
		if cniBinErr != nil {
			return
		}
		cmd := exec.Command("bash", "hack/cni-plugins.sh", cniBin)
		cmd.Dir = repoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			cniBinErr = fmt.Errorf("build cni plugins: %v\n%s", err, out)
		}
	})
	if cniBinErr != nil {
		t.Fatal(cniBinErr)
	}
	for _, p := range []string{"bridge", "host-local", "portmap", "firewall"} {
		if !fileExists(filepath.Join(cniBin, p)) {
			t.Fatalf("CNI plugin %s missing in %s", p, cniBin)
		}
	}
	return cniBin
}

// newTestNetwork writes a conflist for a bridge and /24 of this test's own,
// so that e2e runs, critest and other engineers' tests do not collide. The
// bridge is deleted at the end.
func newTestNetwork(t testing.TB) *testNetwork {
	t.Helper()
	var rnd [3]byte
	rand.Read(rnd[:])
	suffix := hex.EncodeToString(rnd[:])
	dir := t.TempDir()
	n := &testNetwork{
		ConfDir: filepath.Join(dir, "net.d"),
		BinDir:  cniPlugins(t),
		DataDir: filepath.Join(dir, "ipam"),
		Name:    "be2e-" + suffix,
		Bridge:  "be2e" + suffix,
	}
	// 10.100-149.x.0/24: clear of critest's 10.244.213.0/24 and the
	// default 10.88.0.0/16.
	subnet := fmt.Sprintf("10.%d.%d.0/24", 100+int(rnd[0])%50, rnd[1])
	_, n.Subnet, _ = net.ParseCIDR(subnet)
	cmd := exec.Command("bash", "hack/cni-conf.sh", n.ConfDir, subnet)
	cmd.Dir = repoRoot(t)
	cmd.Env = append(os.Environ(), "BERTH_CNI_BRIDGE="+n.Bridge, "BERTH_CNI_DATA_DIR="+n.DataDir, "BERTH_CNI_NAME="+n.Name)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/cni-conf.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", n.Bridge).Run()
		n.dropRules(t)
	})
	return n
}

// dropRules deletes the iptables rules a failed test left on this network
// (a pod it could not remove never got its CNI DEL): NAT rules whose
// comment names the network, the chains they jump to, and filter rules
// naming one of its addresses. Only this test's unique network matches.
func (n *testNetwork) dropRules(t testing.TB) {
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			return
		}
		var chains []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "-A ") {
				continue
			}
			args := splitQuoted(l)
			ours := strings.Contains(l, `name: \"`+n.Name+`\"`)
			for _, a := range args {
				if ip, _, err := net.ParseCIDR(a); err == nil && n.Subnet.Contains(ip) && strings.HasSuffix(a, "/32") {
					ours = true
				}
			}
			if !ours {
				continue
			}
			args[0] = "-D"
			if out, err := exec.Command("iptables", append([]string{"-t", table}, args...)...).CombinedOutput(); err != nil {
				t.Logf("drop leftover rule %s: %v %s", l, err, out)
				continue
			}
			t.Logf("dropped leftover iptables rule: %s", l)
			if i := slices.Index(args, "-j"); i > 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], "CNI-") && len(args[i+1]) == 28 {
				chains = append(chains, args[i+1])
			}
		}
		for _, c := range chains {
			exec.Command("iptables", "-t", table, "-F", c).Run()
			exec.Command("iptables", "-t", table, "-X", c).Run()
		}
	}
}

// splitQuoted splits an iptables-save line into arguments, honouring the
// double quotes (with backslash escapes) around comments.
func splitQuoted(l string) []string {
	var (
		args []string
		cur  strings.Builder
		inQ  bool
		have bool
	)
	for i := 0; i < len(l); i++ {
		ch := l[i]
		switch {
		case inQ && ch == '\\' && i+1 < len(l):
			i++
			cur.WriteByte(l[i])
		case ch == '"':
			inQ, have = !inQ, true
		case ch == ' ' && !inQ:
			if have {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(ch)
			have = true
		}
	}
	if have {
		args = append(args, cur.String())
	}
	return args
}

// Leases returns the IPs host-local has leased on this network.
func (n *testNetwork) Leases() []string {
	ents, _ := os.ReadDir(filepath.Join(n.DataDir, n.Name))
	var ips []string
	for _, e := range ents {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// Veths returns the interfaces plugged into the bridge.
func (n *testNetwork) Veths() []string {
	ents, _ := os.ReadDir(filepath.Join("/sys/class/net", n.Bridge, "brif"))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// podEnv is a berthd able to run pods: a registry with busybox, a CNI
// network, a cgroup parent and a log directory of the test's own.
type podEnv struct {
	t     testing.TB
	d     *daemon
	rt    runtimeapi.RuntimeServiceClient
	net   *testNetwork
	Image string
	// CgParent prefixes the cgroup parent of each pod of the test
	// (<CgParent>-<pod name>).
	CgParent string
	LogDir   string
}

// newPodEnv starts berthd with a network and pulls busybox. At the end
// every pod left is removed through the CRI (a failed test must not leave
// containers running), then whatever berthd started that still runs is
// killed by PID.
func newPodEnv(t testing.TB) *podEnv { return newPodEnvNet(t, nil) }

// newPodEnvNet is newPodEnv with a hook that changes the test network (its
// conflist, its plugin dirs) before berthd starts.
func newPodEnvNet(t testing.TB, configure func(*testNetwork)) *podEnv {
	t.Helper()
	requireRoot(t)
	testutil.LookPath(t, "iptables-save", "the CNI portmap/firewall plugins need iptables")
	reg := newRegistry(t)
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:1")
	n := newTestNetwork(t)
	if configure != nil {
		configure(n)
	}
	var rnd [3]byte
	rand.Read(rnd[:])
	e := &podEnv{t: t, net: n, Image: bb.Ref, CgParent: "/be2e-" + hex.EncodeToString(rnd[:]), LogDir: t.TempDir()}
	e.d = startDaemonWith(t, reg, daemonOptions{Network: n, Shim: shimBinary(t)})
	rt, images := e.d.CRI()
	e.rt = rt
	// After CRI(): cleanups run last-in first-out and this one needs the
	// connection.
	t.Cleanup(e.cleanup)
	if _, err := images.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: e.Image}}); err != nil {
		t.Fatal(err)
	}
	return e
}

// shimBinary is the berth-shim next to berthd: BERTH_BIN_DIR has it
// (make build); otherwise it is built into the same temp dir as berthd.
func shimBinary(t testing.TB) string {
	t.Helper()
	berthd, _ := binaries(t)
	p := filepath.Join(filepath.Dir(berthd), "berth-shim")
	shimOnce.Do(func() {
		if fileExists(p) && fileExists(filepath.Join(filepath.Dir(p), shimbuild.Runc)) {
			return
		}
		// berth-shim runs the berth-runc next to it.
		if _, err := shimbuild.Build(filepath.Dir(p)); err != nil {
			shimErr = fmt.Errorf("build berth-shim: %w", err)
		}
	})
	if shimErr != nil {
		t.Fatal(shimErr)
	}
	return p
}

var (
	shimOnce sync.Once
	shimErr  error
)

func (e *podEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if e.d.cmd != nil {
		if pods, err := e.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range pods.Items {
				e.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
				if _, err := e.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					e.t.Logf("cleanup: remove pod %s: %v", p.Id, err)
				}
			}
		}
	}
	// Shims, pause holders and container processes of this daemon only:
	// shims name its state dir on their command line, the others live in
	// this test's cgroup parent.
	for _, pid := range e.ownProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		e.t.Logf("cleanup: killing leftover process %d: %s", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	for _, pid := range e.ownProcesses() {
		for i := 0; i < 50 && syscall.Kill(pid, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	// Leftover cgroups (empty now), deepest first: the test's parent and
	// everything under it.
	for _, dir := range e.cgroups(strings.TrimPrefix(e.CgParent, "/")) {
		var tree []string
		filepath.WalkDir(dir, func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				tree = append(tree, p)
			}
			return nil
		})
		// Walked parents first; removed children first.
		for i := len(tree) - 1; i >= 0; i-- {
			os.Remove(tree[i])
		}
	}
}

// ownProcesses lists the processes this test's berthd started, by PID:
// those whose command line names its base directory and those in the
// test's cgroup parent.
func (e *podEnv) ownProcesses() []int {
	base := filepath.Dir(e.d.Root)
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() || (e.d.cmd != nil && pid == e.d.cmd.Process.Pid) {
			continue
		}
		// A zombie is gone but for its parent's wait: a pause holder whose
		// berthd was killed is re-parented to PID 1, which reaps when it
		// gets to it.
		if stat, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat")); zombie(stat) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		cg, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cgroup"))
		if strings.Contains(string(cmdline), base+"/") || strings.Contains(string(cg), e.CgParent) || holdsFileUnder(pid, base) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// holdsFileUnder reports whether pid has a file under dir open: a shim
// started on standby names no path on its command line, but holds its
// state directory's log.
func holdsFileUnder(pid int, dir string) bool {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name())); err == nil && strings.HasPrefix(l, dir+"/") {
			return true
		}
	}
	return false
}

// cgroups returns the cgroup directories anywhere under /sys/fs/cgroup
// (every v1 hierarchy, or the v2 tree) whose name contains one of names,
// deepest first.
func (e *podEnv) cgroups(names ...string) []string {
	var found []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, de os.DirEntry, err error) error {
		if err != nil || !de.IsDir() {
			return nil
		}
		if slices.ContainsFunc(names, func(n string) bool { return strings.Contains(filepath.Base(p), n) }) {
			found = append(found, p)
		}
		return nil
	})
	slices.SortFunc(found, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return found
}

// podOptions are what a test varies in a pod.
type podOptions struct {
	Ports []*runtimeapi.PortMapping
	// SharedPID gives the pod one PID namespace, held by a pause process.
	SharedPID bool
}

// RunPod runs a pod and returns its ID and config.
func (e *podEnv) RunPod(name string, o podOptions) (string, *runtimeapi.PodSandboxConfig) {
	e.t.Helper()
	// As the kubelet sends it: POD is the zero value of the enum.
	ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
	if o.SharedPID {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "uid-" + name},
		Hostname:     name,
		LogDirectory: filepath.Join(e.LogDir, name),
		PortMappings: o.Ports,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			// One parent per pod, as the kubelet's /kubepods/pod<uid>.
			CgroupParent:    e.CgParent + "-" + name,
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
		},
	}
	r, err := e.rt.RunPodSandbox(ctxT(e.t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		e.t.Fatalf("run pod %s: %v", name, err)
	}
	return r.PodSandboxId, cfg
}

// containerOptions are what a test varies in a container.
type containerOptions struct {
	Mounts []*runtimeapi.Mount
	Stdin  bool
}

// RunContainer creates and starts a busybox container running sh -c script;
// its CRI log is <pod log dir>/<name>.log.
func (e *podEnv) RunContainer(podID string, podCfg *runtimeapi.PodSandboxConfig, name, script string, o containerOptions) string {
	e.t.Helper()
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: e.Image},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Mounts:   o.Mounts,
		Stdin:    o.Stdin,
	}
	ctx := ctxT(e.t)
	c, err := e.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
	if err != nil {
		e.t.Fatalf("create container %s: %v", name, err)
	}
	if _, err := e.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		e.t.Fatalf("start container %s: %v", name, err)
	}
	return c.ContainerId
}

// leftovers lists, by kind, what is left on the machine of the given pods
// and containers after they were removed; empty means nothing.
func (e *podEnv) leftovers(podIDs, ctrIDs, ips []string) []string {
	var left []string
	ids := append(slices.Clone(podIDs), ctrIDs...)
	base := filepath.Dir(e.d.Root)
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			mentions := strings.HasPrefix(f[4], base+"/") || slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(l, id[:12]) })
			if mentions {
				left = append(left, "mount "+f[4])
			}
		}
	}
	for _, kind := range []string{"net", "ipc", "uts", "pid", "user"} {
		ents, _ := os.ReadDir(filepath.Join(e.d.State, "ns", kind))
		for _, ent := range ents {
			left = append(left, "pinned "+kind+" namespace "+ent.Name())
		}
	}
	for _, v := range e.net.Veths() {
		left = append(left, "veth "+v+" on "+e.net.Bridge)
	}
	for _, ip := range e.net.Leases() {
		left = append(left, "IPAM lease "+ip)
	}
	// The pod cgroups: named by the parents the "kubelet" gave (as
	// /kubepods/pod<uid>), which berthd created and so must remove.
	for _, cg := range e.cgroups(append(slices.Clone(ids), strings.TrimPrefix(e.CgParent, "/"))...) {
		left = append(left, "cgroup "+cg)
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			hit := slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(l, id) }) ||
				slices.ContainsFunc(ips, func(ip string) bool {
					return strings.Contains(l, ip+"/") || strings.Contains(l, ip+" ") || strings.Contains(l, ip+":")
				})
			if hit {
				left = append(left, "iptables rule "+l)
			}
		}
	} else {
		left = append(left, "iptables-save failed: "+err.Error())
	}
	for _, pid := range e.ownProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	return left
}

// httpGet fetches url, retrying for a few seconds while the server starts.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	var lastErr error
	for range 40 {
		resp, err := c.Get(url)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				return string(b), nil
			}
		}
		lastErr = err
		time.Sleep(100 * time.Millisecond)
	}
	return "", lastErr
}

// freePort returns a TCP port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return -1
	}
	return fi.Size()
}

// zombie tells from /proc/<pid>/stat whether a process has exited and
// waits to be reaped (state Z, after the parenthesised command name).
func zombie(stat []byte) bool {
	i := strings.LastIndexByte(string(stat), ')')
	return i >= 0 && strings.HasPrefix(string(stat[i+1:]), " Z")
}
