package network

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/big"
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

	"github.com/miekg/dns"
	"github.com/moby/moby/api/types/events"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/logctx"
)

// The root tests run the real plugins (from $BERTH_CNI_BIN, _output/cni/bin
// after `make build`, or built by hack/cni-plugins.sh) against namespaces
// made with `ip netns add`, on bridges, subnets and pools of their own.

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root: creates network namespaces, bridges and iptables rules")
		}
		t.Skip("needs root: creates network namespaces, bridges and iptables rules")
	}
	for _, tool := range []string{"ip", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (apt-get install iproute2 iptables)", tool)
		}
	}
}

func plugins(t testing.TB) string {
	t.Helper()
	pluginsOnce.Do(func() {
		if dir := os.Getenv("BERTH_CNI_BIN"); dir != "" {
			pluginsDir = dir
			return
		}
		if dir, _ := filepath.Abs("../../_output/cni/bin"); fileExists(filepath.Join(dir, "bridge")) && fileExists(filepath.Join(dir, "firewall")) {
			pluginsDir = dir
			return
		}
		dir := filepath.Join(os.TempDir(), "berth-network-test-plugins")
		out, err := exec.Command("bash", "../../hack/cni-plugins.sh", dir).CombinedOutput()
		if err != nil {
			pluginsErr = fmt.Errorf("hack/cni-plugins.sh: %v\n%s", err, out)
			return
		}
		pluginsDir = dir
	})
	if pluginsErr != nil {
		t.Fatal(pluginsErr)
	}
	return pluginsDir
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func randInt(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// testEnv is one test's manager: its own root, default bridge and pools.
type testEnv struct {
	t    testing.TB
	root string
	cfg  Config
	m    *Manager
	// tag is in every name this test gives the host (bridges, netns).
	tag string
	// upstream is a DNS server in the host's namespace that answers
	// "upstream.test." and NXDOMAIN for the rest.
	upstream netip.Addr
	// events are what the manager emitted.
	events *eventLog
}

// eventLog records events as "action network-name container".
type eventLog struct {
	mu  sync.Mutex
	log []string
}

func (l *eventLog) Log(typ events.Type, action events.Action, id string, attrs map[string]string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, strings.TrimSpace(fmt.Sprintf("%s %s %s %s", typ, action, attrs["name"], attrs["container"])))
}

func (l *eventLog) has(s string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.log, s)
}

// newEnv makes a Manager on a temp root. The default network gets a
// random /24 of 10.128.0.0/9 and user networks come from a random /16 of
// it, so that parallel tests and daemons do not meet.
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	requireRoot(t)
	bin := plugins(t)
	tag := randHex(3)
	b2 := 128 + randInt(120)
	e := &testEnv{t: t, root: t.TempDir(), tag: tag, events: &eventLog{}}
	e.upstream = startUpstream(t)
	resolv := filepath.Join(e.root, "host-resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver "+e.upstream.String()+"\nsearch example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e.cfg = Config{
		Root:          filepath.Join(e.root, "network"),
		NetNSDir:      "/run/netns",
		BinDirs:       []string{bin},
		DefaultBridge: "bt" + tag + "d",
		DefaultSubnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", b2, 250+randInt(5))),
		AddressPools:  []Pool{{Base: netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", b2)), Size: 24}},
		ResolvConf:    resolv,
		Events:        e.events,
	}
	e.open()
	t.Cleanup(e.cleanup)
	return e
}

func (e *testEnv) open() {
	e.t.Helper()
	var log *slog.Logger
	if os.Getenv("BERTH_TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	m, err := Open(logctx.With(e.t.Context(), log), e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	e.m = m
}

// crash drops the manager as a kill -9 would: its sockets close, nothing
// else is undone.
func (e *testEnv) crash() {
	e.m.Close()
	e.m = nil
}

// cleanup removes what a failed test left: containers, networks, bridges.
func (e *testEnv) cleanup() {
	if e.m != nil {
		ctx := context.Background()
		_, _ = e.m.GC(ctx, nil)
		for _, n := range e.m.List() {
			if !n.Predefined() {
				_ = e.m.Remove(ctx, n.ID)
			}
		}
		for _, n := range e.m.List() {
			if n.Name == NameBridge {
				nn := n
				_ = e.m.removeIsolation(&nn)
				_ = e.m.deleteBridge(&nn)
			}
		}
		e.m.Close()
	}
	out, _ := exec.Command("ip", "-o", "link", "show").Output()
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && strings.Contains(f[1], e.tag) {
			_ = exec.Command("ip", "link", "del", strings.TrimSuffix(strings.Split(f[1], "@")[0], ":")).Run()
		}
	}
}

// netns makes a namespace with lo up, as the runtime pins one.
func (e *testEnv) netns(name string) string {
	e.t.Helper()
	full := "bt" + e.tag + "-" + name
	run(e.t, "ip", "netns", "add", full)
	e.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", full).Run() })
	run(e.t, "ip", "-n", full, "link", "set", "lo", "up")
	return "/run/netns/" + full
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// inNetNS runs f on a thread inside the namespace.
func inNetNS(t testing.TB, path string, f func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer host.Close()
		ns, err := os.Open(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", path, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime ends it.
			errc <- fmt.Errorf("return to the host namespace: %w", err)
			return
		}
		goruntime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// serve listens on :port inside the namespace and greets each connection
// with the namespace's name.
func serve(t testing.TB, path string, port int) {
	t.Helper()
	var l net.Listener
	if err := inNetNS(t, path, func() error {
		var err error
		l, err = net.Listen("tcp", fmt.Sprintf(":%d", port))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", filepath.Base(path))
			c.Close()
		}
	}()
}

// dial connects to addr from the namespace (the host's when path is
// empty) and returns the greeting.
func dial(t testing.TB, path, addr string) (string, error) {
	t.Helper()
	var line string
	f := func() error {
		c, err := net.DialTimeout("tcp", addr, 1500*time.Millisecond)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	}
	var err error
	if path == "" {
		err = f()
	} else {
		err = inNetNS(t, path, f)
	}
	return strings.TrimSpace(line), err
}

// lookup asks server for name's records of type qtype from the namespace.
func lookup(t testing.TB, path string, server netip.Addr, name string, qtype uint16, network string) (*dns.Msg, error) {
	t.Helper()
	var resp *dns.Msg
	err := inNetNS(t, path, func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), qtype)
		c := &dns.Client{Net: network, Timeout: 2 * time.Second}
		var err error
		resp, _, err = c.Exchange(m, netip.AddrPortFrom(server, 53).String())
		return err
	})
	return resp, err
}

// answers returns the addresses (or PTR targets) of a reply.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch r := rr.(type) {
		case *dns.A:
			out = append(out, r.A.String())
		case *dns.AAAA:
			out = append(out, r.AAAA.String())
		case *dns.PTR:
			out = append(out, r.Ptr)
		}
	}
	return out
}

// startUpstream runs a DNS server on a random 127.x.y.z:53 that answers
// upstream.test. with 192.0.2.99 and NXDOMAIN for the rest.
func startUpstream(t testing.TB) netip.Addr {
	t.Helper()
	addr := netip.AddrFrom4([4]byte{127, byte(1 + randInt(250)), byte(randInt(250)), byte(2 + randInt(250))})
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if len(r.Question) == 1 && r.Question[0].Name == "upstream.test." && r.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "upstream.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.99")})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	for _, netw := range []string{"udp", "tcp"} {
		srv := &dns.Server{Addr: netip.AddrPortFrom(addr, 53).String(), Net: netw, Handler: h}
		started := make(chan error, 1)
		srv.NotifyStartedFunc = func() { started <- nil }
		go func() { started <- srv.ListenAndServe() }()
		if err := <-started; err != nil {
			t.Fatalf("upstream %s: %v", netw, err)
		}
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return addr
}

// leftovers lists what the host still holds of the given networks: the
// bridge, veths on it, iptables rules naming the bridge or the subnet,
// lease files, DNS listeners, CNI cache entries.
func (e *testEnv) leftovers(nets ...Network) []string {
	e.t.Helper()
	var out []string
	save := run(e.t, "iptables-save")
	if _, err := exec.LookPath("ip6tables-save"); err == nil {
		save += run(e.t, "ip6tables-save")
	}
	for _, n := range nets {
		if bridgeExists(n.Bridge) {
			out = append(out, "bridge "+n.Bridge)
		}
		for _, line := range strings.Split(save, "\n") {
			if strings.Contains(line, n.Bridge) || strings.Contains(line, n.ID) {
				out = append(out, "iptables: "+line)
			}
			for _, c := range n.IPAM.Config {
				net3 := strings.TrimSuffix(c.Subnet.Masked().Addr().String(), "0")
				if c.Subnet.Addr().Is4() && strings.Contains(line, " "+net3) || strings.Contains(line, "-s "+net3) || strings.Contains(line, "-d "+net3) {
					out = append(out, "iptables: "+line)
				}
			}
		}
		if fileExists(filepath.Join(e.cfg.ipamDir(), cniName(&n))) {
			out = append(out, "lease dir of "+n.Name)
		}
		if c, ok := n.subnet4(); ok {
			if e.m != nil {
				for _, a := range e.m.Resolver().Listening() {
					if a == c.Gateway {
						out = append(out, "dns listener on "+a.String())
					}
				}
			}
			if l, err := net.ListenPacket("udp", netip.AddrPortFrom(c.Gateway, 53).String()); err == nil {
				l.Close()
			} else if !strings.Contains(err.Error(), "cannot assign requested address") {
				out = append(out, "udp :53 on "+c.Gateway.String()+": "+err.Error())
			}
		}
	}
	results, _ := os.ReadDir(filepath.Join(e.cfg.cacheDir(), "results"))
	for _, r := range results {
		out = append(out, "cni cache: "+r.Name())
	}
	return out
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }

// routed puts the pool's /24 number third on a bridge of its own, as a
// route of the host that is not ours.
func (e *testEnv) routed(third int) netip.Prefix {
	e.t.Helper()
	b := e.cfg.AddressPools[0].Base.Addr().As4()
	p := netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1], byte(third), 0}), 24)
	name := "bt" + e.tag + "r" + fmt.Sprint(third)
	run(e.t, "ip", "link", "add", name, "type", "bridge")
	e.t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	run(e.t, "ip", "addr", "add", p.Addr().Next().String()+"/24", "dev", name)
	run(e.t, "ip", "link", "set", name, "up")
	return p
}

// routedPrefix is the pool's /24 number third (not routed).
func (e *testEnv) routedPrefix(third int) netip.Prefix {
	b := e.cfg.AddressPools[0].Base.Addr().As4()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{b[0], b[1], byte(third), 0}), 24)
}
