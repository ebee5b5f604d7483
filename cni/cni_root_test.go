package cni

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// These tests run the real plugins (built from the pinned module by
// hack/cni-plugins.sh, or taken from $BERTH_CNI_BIN) against a namespace
// made with `ip netns add`, on a bridge and subnet of their own. Traffic
// stays on this machine: the host talks to a listener in the namespace.

var (
	realPluginsOnce sync.Once
	realPluginsDir  string
	realPluginsErr  error
	// realPluginsBuilt: TestMain removes the dir this process built.
	realPluginsBuilt bool
)

func realPlugins(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t, "creates network namespaces, bridges and iptables rules")
	for _, tool := range []string{"ip", "iptables-save"} {
		testutil.LookPath(t, tool, "apt-get install iproute2 iptables")
	}
	realPluginsOnce.Do(func() {
		if dir := os.Getenv("BERTH_CNI_BIN"); dir != "" {
			realPluginsDir = dir
			return
		}
		dir, err := os.MkdirTemp("", "berth-cni-plugins-")
		if err != nil {
			realPluginsErr = err
			return
		}
		out, err := exec.Command("bash", "../hack/cni-plugins.sh", dir).CombinedOutput()
		if err != nil {
			os.RemoveAll(dir)
			realPluginsErr = fmt.Errorf("hack/cni-plugins.sh: %v\n%s", err, out)
			return
		}
		realPluginsDir, realPluginsBuilt = dir, true
	})
	if realPluginsErr != nil {
		t.Fatal(realPluginsErr)
	}
	return realPluginsDir
}

// rootEnv is one test's network: a conflist from hack/cni-conf.sh on its own
// bridge and /24, a namespace, a Manager.
type rootEnv struct {
	m       *Manager
	bridge  string
	subnet  netip.Prefix
	dataDir string
	nsName  string
	nsPath  string
}

func newRootEnv(t testing.TB, n int) *rootEnv {
	t.Helper()
	bin := realPlugins(t)
	dir := t.TempDir()
	pid := os.Getpid()
	e := &rootEnv{
		bridge:  fmt.Sprintf("bcni%d%d", pid%100000, n),
		subnet:  netip.MustParsePrefix(fmt.Sprintf("10.250.%d.0/24", (pid+n*37)%200+20)),
		dataDir: filepath.Join(dir, "ipam"),
		nsName:  fmt.Sprintf("berth-cni-test-%d-%d", pid, n),
	}
	e.nsPath = filepath.Join("/run/netns", e.nsName)
	confDir := filepath.Join(dir, "net.d")
	cmd := exec.Command("bash", "../hack/cni-conf.sh", confDir, e.subnet.String())
	cmd.Env = append(os.Environ(), "BERTH_CNI_BRIDGE="+e.bridge, "BERTH_CNI_DATA_DIR="+e.dataDir, "BERTH_CNI_NAME=berth-test")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hack/cni-conf.sh: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		// DEL never removes the bridge; the test made it, the test removes it.
		_ = exec.Command("ip", "link", "del", e.bridge).Run()
	})
	run(t, "ip", "netns", "add", e.nsName)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", e.nsName).Run() })

	m, err := New(Config{ConfDir: confDir, BinDirs: []string{bin}, CacheDir: filepath.Join(dir, "cache"), NetNSDir: "/run/netns"})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	return e
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listenInNetNS opens a TCP listener inside the namespace: the socket
// belongs to the namespace of the thread that creates it, so a locked
// thread enters the namespace, listens and comes back.
func listenInNetNS(t testing.TB, nsPath, addr string) net.Listener {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		goruntime.LockOSThread()
		l, err := func() (net.Listener, error) {
			host, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				return nil, err
			}
			defer host.Close()
			pod, err := os.Open(nsPath)
			if err != nil {
				return nil, err
			}
			defer pod.Close()
			if err := unix.Setns(int(pod.Fd()), unix.CLONE_NEWNET); err != nil {
				return nil, fmt.Errorf("setns %s: %w", nsPath, err)
			}
			l, lerr := net.Listen("tcp", addr)
			if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
				// Leave the thread locked: the runtime then ends it instead of
				// reusing a thread stuck in the pod's namespace.
				panic(fmt.Sprintf("return to the host netns: %v", err))
			}
			return l, lerr
		}()
		goruntime.UnlockOSThread()
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in %s: %v", nsPath, r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	go func() {
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from the pod\n")
			c.Close()
		}
	}()
	return r.l
}

func dialGreeting(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read from %s: %w", addr, err)
	}
	if line != "hello from the pod\n" {
		return fmt.Errorf("%s answered %q", addr, line)
	}
	return nil
}

func freePort(t testing.TB) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

// leftovers lists what a detached pod must not leave: interfaces on the
// bridge, lease files, iptables rules naming the pod or its IP, libcni
// cache entries.
func (e *rootEnv) leftovers(t testing.TB, id string, ip netip.Addr) []string {
	t.Helper()
	var out []string
	if links := strings.TrimSpace(run(t, "ip", "-o", "link", "show", "master", e.bridge)); links != "" {
		out = append(out, "interfaces on "+e.bridge+": "+links)
	}
	_ = filepath.Walk(e.dataDir, func(path string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		data, _ := os.ReadFile(path)
		if (ip.IsValid() && fi.Name() == ip.String()) || strings.Contains(string(data), id) {
			out = append(out, "lease file "+path)
		}
		return nil
	})
	// Any rule naming the test's /24 (10.250.X.) is the pod's: the subnet is
	// this test's alone.
	net3 := strings.TrimSuffix(e.subnet.Addr().String(), "0")
	for _, line := range strings.Split(run(t, "iptables-save"), "\n") {
		if strings.Contains(line, id) || strings.Contains(line, net3) {
			out = append(out, "iptables: "+line)
		}
	}
	results, _ := os.ReadDir(filepath.Join(e.m.Config().CacheDir, "results"))
	for _, r := range results {
		out = append(out, "cni cache: "+r.Name())
	}
	return out
}

func TestRootAttachReachableAndDetachLeavesNothing(t *testing.T) {
	e := newRootEnv(t, 0)
	if ok, msg := e.m.Ready(t.Context()); !ok {
		t.Fatalf("Ready = false: %s", msg)
	}
	id := fmt.Sprintf("berthcnitest%d", os.Getpid())
	hostPort := freePort(t)
	args := PodArgs{
		ID: id, NetNS: e.nsPath, PodName: "web", PodNamespace: "default", PodUID: "uid-" + id,
		PortMappings: []PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "TCP"}},
	}
	res, err := e.m.Attach(t.Context(), args)
	if err != nil {
		t.Fatal(err)
	}
	detached := false
	t.Cleanup(func() {
		if !detached {
			_ = e.m.Detach(t.Context(), args)
		}
	})
	if len(res.IPs) != 1 || !e.subnet.Contains(res.IPs[0].Address.Addr()) || res.IPs[0].Address.Bits() != 24 {
		t.Fatalf("Attach IPs %+v, want one address in %s", res.IPs, e.subnet)
	}
	podIP := res.IPs[0].Address.Addr()
	gateway := e.subnet.Addr().Next()
	if res.IPs[0].Gateway != gateway || res.Interface != "eth0" || res.MAC == "" || res.Network != "berth-test" {
		t.Errorf("Attach result %+v, want gateway %s on eth0 of berth-test with a MAC", res, gateway)
	}
	if out := run(t, "ip", "-n", e.nsName, "-o", "addr", "show", "eth0"); !strings.Contains(out, res.IPs[0].Address.String()) {
		t.Errorf("eth0 in the namespace lacks %s:\n%s", res.IPs[0].Address, out)
	}
	if out := run(t, "ip", "-n", e.nsName, "-o", "link", "show", "lo"); !strings.Contains(out, ",UP") {
		t.Errorf("lo is not up in the namespace: %s", out)
	}

	listenInNetNS(t, e.nsPath, ":8080")
	for _, addr := range []string{
		net.JoinHostPort(podIP.String(), "8080"),                 // the bridge route
		net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort)),      // portmap via route_localnet
		net.JoinHostPort(gateway.String(), fmt.Sprint(hostPort)), // portmap on a host address
	} {
		if err := dialGreeting(addr); err != nil {
			t.Errorf("host -> %s: %v", addr, err)
		}
	}

	st, err := e.m.Status(t.Context(), id, e.nsPath)
	if err != nil {
		t.Fatalf("Status (CHECK with the real plugins): %v", err)
	}
	if st.IPs[0] != res.IPs[0] {
		t.Errorf("Status IPs %+v, want %+v", st.IPs, res.IPs)
	}

	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	detached = true
	if err := dialGreeting(net.JoinHostPort("127.0.0.1", fmt.Sprint(hostPort))); err == nil {
		t.Error("the host port still reaches the pod after Detach")
	}
	run(t, "ip", "netns", "del", e.nsName)
	// Stop after the namespace is gone (kubelet's StopPodSandbox then
	// RemovePodSandbox): DEL again, with the path missing.
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatalf("Detach with the namespace gone: %v", err)
	}
	if left := e.leftovers(t, id, podIP); len(left) > 0 {
		t.Errorf("left after Detach:\n%s", strings.Join(left, "\n"))
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), e.nsName) {
		t.Errorf("a mount of %s is left", e.nsName)
	}
}

func TestRootDetachAfterNamespaceGoneReleasesLease(t *testing.T) {
	e := newRootEnv(t, 1)
	// The bridge plugin tears its ipMasq rules down only from the veth it
	// finds in the namespace: with the namespace gone they stay behind
	// (containernetworking/plugins#810, fix unmerged in v1.10.0). So the
	// runtime detaches before it unpins the namespace, and this test, about
	// the lease, runs without masquerading.
	conf := filepath.Join(e.m.Config().ConfDir, "10-berth.conflist")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	noMasq := strings.Replace(string(data), `"ipMasq": true`, `"ipMasq": false`, 1)
	if noMasq == string(data) {
		t.Fatal("the default conflist has no ipMasq to turn off")
	}
	if err := os.WriteFile(conf, []byte(noMasq), 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("berthcnigone%d", os.Getpid())
	args := PodArgs{ID: id, NetNS: e.nsPath, PodName: "p", PodNamespace: "default", PodUID: "u",
		PortMappings: []PortMapping{{HostPort: freePort(t), ContainerPort: 80}}}
	res, err := e.m.Attach(t.Context(), args)
	if err != nil {
		t.Fatal(err)
	}
	// The namespace disappears first (a crash, a reboot's tmpfs): the veth
	// dies with it, the lease and the iptables rules do not.
	run(t, "ip", "netns", "del", e.nsName)
	if left := e.leftovers(t, id, res.Addrs()[0]); len(left) == 0 {
		t.Fatal("nothing to clean before Detach: the test proves nothing")
	}
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	if left := e.leftovers(t, id, res.Addrs()[0]); len(left) > 0 {
		t.Errorf("left after Detach:\n%s", strings.Join(left, "\n"))
	}
}

func TestRootFailedAttachLeaksNoLease(t *testing.T) {
	e := newRootEnv(t, 2)
	// A firewall plugin with an unknown ingress policy fails ADD after it
	// added its rules and after bridge allocated an address and made the
	// veth, and it fails DEL as well: the rollback must still reach the
	// bridge and the IPAM plugin.
	conf := filepath.Join(e.m.Config().ConfDir, "10-berth.conflist")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	broken := strings.Replace(string(data), `"type": "firewall"`, `"type": "firewall", "ingressPolicy": "nosuchpolicy"`, 1)
	if broken == string(data) {
		t.Fatal("the default conflist has no firewall plugin to break")
	}
	if err := os.WriteFile(conf, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("berthcnifail%d", os.Getpid())
	_, err = e.m.Attach(t.Context(), PodArgs{ID: id, NetNS: e.nsPath, PodName: "p", PodNamespace: "default",
		PortMappings: []PortMapping{{HostPort: freePort(t), ContainerPort: 80}}})
	if err == nil {
		t.Fatal("Attach with a broken firewall plugin succeeded")
	}
	if !strings.Contains(err.Error(), "nosuchpolicy") {
		t.Errorf("Attach error %v does not carry the plugin's message", err)
	}
	if left := e.leftovers(t, id, netip.Addr{}); len(left) > 0 {
		t.Errorf("left after a failed Attach:\n%s", strings.Join(left, "\n"))
	}
	// The lease file would be named after the address; none may remain.
	ents, _ := os.ReadDir(filepath.Join(e.dataDir, "berth-test"))
	for _, ent := range ents {
		if _, err := netip.ParseAddr(ent.Name()); err == nil {
			t.Errorf("lease %s left after a failed Attach", ent.Name())
		}
	}
	if out := run(t, "ip", "-n", e.nsName, "-o", "link", "show"); strings.Contains(out, "eth0") {
		t.Errorf("eth0 left in the namespace after a failed Attach: %s", out)
	}
}

func TestRootAttachRefusesHostNamespace(t *testing.T) {
	e := newRootEnv(t, 3)
	// A pinned namespace that is the host's: what a runtime bug (pinning
	// before unshare) would leave.
	pin := filepath.Join("/run/netns", e.nsName+"-host")
	if err := os.WriteFile(pin, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(pin) })
	if err := unix.Mount("/proc/self/ns/net", pin, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("pin the host namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(pin, unix.MNT_DETACH) })
	_, err := e.m.Attach(t.Context(), PodArgs{ID: "hostns", NetNS: pin})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Attach to the host's namespace = %v, want InvalidArgument", err)
	}
}

func TestRootConcurrentPods(t *testing.T) {
	e := newRootEnv(t, 5)
	const pods = 4
	args := make([]PodArgs, pods)
	for i := range args {
		name := fmt.Sprintf("%s-%d", e.nsName, i)
		run(t, "ip", "netns", "add", name)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
		args[i] = PodArgs{ID: fmt.Sprintf("berthcniconc%d-%d", os.Getpid(), i), NetNS: filepath.Join("/run/netns", name),
			PodName: fmt.Sprint("p", i), PodNamespace: "default",
			PortMappings: []PortMapping{{HostPort: freePort(t), ContainerPort: 8080}}}
	}
	results := make([]Result, pods)
	errs := make([]error, pods)
	var wg sync.WaitGroup
	for i := range args {
		wg.Go(func() { results[i], errs[i] = e.m.Attach(t.Context(), args[i]) })
	}
	wg.Wait()
	seen := map[netip.Addr]bool{}
	for i := range args {
		if errs[i] != nil {
			t.Fatalf("pod %d: %v", i, errs[i])
		}
		ip := results[i].Addrs()[0]
		if seen[ip] {
			t.Errorf("%s handed out twice", ip)
		}
		seen[ip] = true
	}
	// Each pod answers on its own host port.
	for i := range args {
		listenInNetNS(t, args[i].NetNS, ":8080")
		if err := dialGreeting(net.JoinHostPort("127.0.0.1", fmt.Sprint(args[i].PortMappings[0].HostPort))); err != nil {
			t.Errorf("pod %d: %v", i, err)
		}
	}
	for i := range args {
		wg.Go(func() { errs[i] = e.m.Detach(t.Context(), args[i]) })
	}
	wg.Wait()
	for i := range args {
		if errs[i] != nil {
			t.Errorf("detach pod %d: %v", i, errs[i])
		}
		if left := e.leftovers(t, args[i].ID, results[i].Addrs()[0]); len(left) > 0 {
			t.Errorf("pod %d left:\n%s", i, strings.Join(left, "\n"))
		}
	}
}

// BenchmarkRootAttachDetach measures ADD (loopback + the list, with one port
// mapping) and DEL with the real plugins and reports their medians:
// bridge+portmap is the set containerd's critest config uses, the default
// conflist adds firewall.
func BenchmarkRootAttachDetach(b *testing.B) {
	b.Run("bridge+portmap", func(b *testing.B) { benchAttachDetach(b, 4, false) })
	b.Run("bridge+portmap+firewall", func(b *testing.B) { benchAttachDetach(b, 6, true) })
}

func benchAttachDetach(b *testing.B, n int, firewall bool) {
	e := newRootEnv(b, n)
	if !firewall {
		conf := filepath.Join(e.m.Config().ConfDir, "10-berth.conflist")
		data, err := os.ReadFile(conf)
		if err != nil {
			b.Fatal(err)
		}
		noFirewall := strings.Replace(string(data), ",\n    {\n      \"type\": \"firewall\"\n    }", "", 1)
		if noFirewall == string(data) {
			b.Fatal("could not drop the firewall plugin from the conflist")
		}
		if err := os.WriteFile(conf, []byte(noFirewall), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	port := freePort(b)
	var adds, dels []time.Duration
	for i := 0; b.Loop(); i++ {
		args := PodArgs{ID: fmt.Sprintf("berthcnibench%d-%d", os.Getpid(), i), NetNS: e.nsPath, PodName: "p", PodNamespace: "default",
			PortMappings: []PortMapping{{HostPort: port, ContainerPort: 80}}}
		start := time.Now()
		if _, err := e.m.Attach(b.Context(), args); err != nil {
			b.Fatal(err)
		}
		mid := time.Now()
		if err := e.m.Detach(b.Context(), args); err != nil {
			b.Fatal(err)
		}
		adds = append(adds, mid.Sub(start))
		dels = append(dels, time.Since(mid))
	}
	b.ReportMetric(median(adds).Seconds()*1000, "add-median-ms")
	b.ReportMetric(median(dels).Seconds()*1000, "del-median-ms")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}
