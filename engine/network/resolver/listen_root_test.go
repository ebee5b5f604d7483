package resolver

import (
	"crypto/rand"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// These tests listen on port 53 of addresses put on a bridge of their own
// (no ports: nothing leaves the host), and query from other addresses of
// that bridge, as containers' sources.

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Getuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root: binds port 53 and makes a bridge")
		}
		t.Skip("needs root: binds port 53 and makes a bridge")
	}
}

func rnd(n int) int {
	v, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	return int(v.Int64())
}

// testBridge makes a bridge with addresses .1 (the listener) to .count of
// a random 10.x.y.0/24 and returns them.
func testBridge(t testing.TB, count int) (string, []netip.Addr) {
	t.Helper()
	name := fmt.Sprintf("btdns%d", rnd(1_000_000))
	base := netip.AddrFrom4([4]byte{10, byte(100 + rnd(100)), byte(rnd(250)), 0})
	if out, err := exec.Command("ip", "link", "add", name, "type", "bridge").CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", name).Run() })
	// Taking the listener's (primary) address away must leave the others.
	if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+name+"/promote_secondaries", []byte("1"), 0o644); err != nil {
		t.Fatal(err)
	}
	var addrs []netip.Addr
	a := base
	for range count {
		a = a.Next()
		if out, err := exec.Command("ip", "addr", "add", a.String()+"/24", "dev", name).CombinedOutput(); err != nil {
			t.Fatalf("ip addr add: %v: %s", err, out)
		}
		addrs = append(addrs, a)
	}
	if out, err := exec.Command("ip", "link", "set", name, "up").CombinedOutput(); err != nil {
		t.Fatalf("ip link set up: %v: %s", err, out)
	}
	return name, addrs
}

// askFrom asks server from the local address src.
func askFrom(src, server netip.Addr, name string, network string, timeout time.Duration) (*dns.Msg, time.Duration, error) {
	c := &dns.Client{Net: network, Timeout: timeout}
	if network == "tcp" {
		c.Dialer = &net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
	} else {
		c.Dialer = &net.Dialer{Timeout: timeout, LocalAddr: &net.UDPAddr{IP: src.AsSlice()}}
	}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	return c.Exchange(m, netip.AddrPortFrom(server, Port).String())
}

func TestRootListenerServesAndRestarts(t *testing.T) {
	requireRoot(t)
	br, addrs := testBridge(t, 3)
	gw, client := addrs[0], addrs[1]
	s := New(Config{ResolvConf: "/nonexistent", ProbeInterval: 100 * time.Millisecond})
	s.SetTable(NewTable([]Entry{{Network: "N", NetworkName: "n", Names: true, Subnets: []netip.Prefix{netip.PrefixFrom(gw, 24).Masked()}, Container: "c", DNSNames: []string{"web"}, Addrs: []netip.Addr{client}}}))
	var ensured atomic.Int32
	ensure := func() error {
		ensured.Add(1)
		out, err := exec.Command("ip", "addr", "replace", gw.String()+"/24", "dev", br).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	if err := s.Listen(gw, ensure); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, proto := range []string{"udp", "tcp"} {
		m, _, err := askFrom(client, gw, "web.", proto, 2*time.Second)
		if err != nil || len(m.Answer) != 1 {
			t.Fatalf("web over %s: %v, %v", proto, m, err)
		}
	}
	// The listener's own address is taken away: its probe fails, ensure
	// puts the address back and the sockets are opened again.
	if out, err := exec.Command("ip", "addr", "del", gw.String()+"/24", "dev", br).CombinedOutput(); err != nil {
		t.Fatalf("ip addr del: %v: %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Restarts(gw) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s.Restarts(gw) == 0 || ensured.Load() == 0 {
		t.Fatalf("listener not restarted after its address went (restarts %d, ensure calls %d)", s.Restarts(gw), ensured.Load())
	}
	m, _, err := askFrom(client, gw, "web.", "udp", 2*time.Second)
	if err != nil || len(m.Answer) != 1 {
		t.Fatalf("web after the restart: %v, %v", m, err)
	}
	s.Unlisten(gw)
	if slices.Contains(s.Listening(), gw) {
		t.Error("still listed after Unlisten")
	}
	if l, err := net.ListenPacket("udp", netip.AddrPortFrom(gw, Port).String()); err != nil {
		t.Errorf("port 53 of %s still bound after Unlisten: %v", gw, err)
	} else {
		l.Close()
	}
}

// TestRootFloodFairness floods the responder from one source at 10k
// queries a second while another source resolves a name every 10 ms: every
// one of the victim's queries must be answered. It logs the victim's
// latencies with and without the flood (figures, not assertions: the
// machine may be busy).
func TestRootFloodFairness(t *testing.T) {
	requireRoot(t)
	_, addrs := testBridge(t, 3)
	gw, flooder, victim := addrs[0], addrs[1], addrs[2]
	up := newUpstream(t)
	s := New(Config{ResolvConf: "/nonexistent", Upstreams: []netip.AddrPort{up.addr}})
	subnet := netip.PrefixFrom(gw, 24).Masked()
	s.SetTable(NewTable([]Entry{
		{Network: "N", NetworkName: "n", Names: true, Subnets: []netip.Prefix{subnet}, Container: "f", DNSNames: []string{"flood"}, Addrs: []netip.Addr{flooder}},
		{Network: "N", NetworkName: "n", Names: true, Subnets: []netip.Prefix{subnet}, Container: "v", DNSNames: []string{"web"}, Addrs: []netip.Addr{victim}},
	}))
	if err := s.Listen(gw, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)

	measure := func(d time.Duration) (lat []time.Duration, failed int) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			m, rtt, err := askFrom(victim, gw, "web.", "udp", time.Second)
			if err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 1 {
				failed++
			} else {
				lat = append(lat, rtt)
			}
			time.Sleep(10 * time.Millisecond)
		}
		return lat, failed
	}
	quiet, qfail := measure(2 * time.Second)

	stop := make(chan struct{})
	var sent, answered atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { flood(t, flooder, gw, 10_000, stop, &sent, &answered) })
	loud, lfail := measure(3 * time.Second)
	close(stop)
	wg.Wait()

	t.Logf("victim without flood: %d queries, p50 %v p99 %v, %d failed", len(quiet), pct(quiet, 50), pct(quiet, 99), qfail)
	t.Logf("victim during a flood of %d queries in 3s (%d answered, most REFUSED by the rate limit): %d queries, p50 %v p99 %v, %d failed",
		sent.Load(), answered.Load(), len(loud), pct(loud, 50), pct(loud, 99), lfail)
	if qfail > 0 || lfail > 0 {
		t.Errorf("victim's queries failed: %d without the flood, %d during it", qfail, lfail)
	}
	if sent.Load() < 10_000 {
		t.Errorf("the flood sent only %d queries in 3s", sent.Load())
	}
}

// flood sends rate queries a second (half for a local name, half for
// forwarded ones) from src until stop, counting replies.
func flood(t testing.TB, src, server netip.Addr, rate int, stop chan struct{}, sent, answered *atomic.Int64) {
	conn, err := net.DialUDP("udp", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, Port)))
	if err != nil {
		t.Error(err)
		return
	}
	defer conn.Close()
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	var pkts [][]byte
	for i, name := range []string{"flood.", "up.test."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		m.Id = uint16(i + 1)
		raw, _ := m.Pack()
		pkts = append(pkts, raw)
	}
	// Batches every millisecond: a sleep per packet would cap the rate.
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	for i := 0; ; {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		due := int(time.Since(start).Seconds() * float64(rate))
		for ; i < due; i++ {
			_, _ = conn.Write(pkts[i%2])
			sent.Add(1)
		}
	}
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}
