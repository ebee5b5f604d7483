package resolver

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// upstream is an in-process DNS server on 127.0.0.1 (a random port) that
// answers "up.test." A, a large TXT for "big.test.", blocks on
// "slow.test." until the test ends, and NXDOMAIN for the rest.
type upstream struct {
	addr    netip.AddrPort
	mu      sync.Mutex
	queries []string
	release chan struct{}
}

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{release: make(chan struct{})}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		q := r.Question[0]
		u.mu.Lock()
		u.queries = append(u.queries, q.Name)
		u.mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(r)
		switch q.Name {
		case "up.test.":
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP("192.0.2.1")})
		case "big.test.":
			for i := range 40 {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60}, Txt: []string{strings.Repeat("x", 50) + string(rune('a'+i%26))}})
			}
		case "slow.test.":
			<-u.release
			return
		default:
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	// The UDP port the kernel picks may be taken for TCP by another
	// process of this shared machine: pick again.
	var (
		pc   net.PacketConn
		l    net.Listener
		port int
	)
	for try := 0; ; try++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		port = pc.LocalAddr().(*net.UDPAddr).Port
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if try == 10 {
			t.Fatal(err)
		}
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		go func() { _ = srv.ActivateAndServe() }()
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	// Registered last, run first: the servers' Shutdown waits for the
	// handlers that slow.test. holds.
	t.Cleanup(func() { close(u.release) })
	u.addr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	return u
}

func (u *upstream) reset() {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.queries = nil
}

func (u *upstream) seen(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Contains(u.queries, name)
}

var (
	subnetA = netip.MustParsePrefix("10.1.0.0/24")
	subnetB = netip.MustParsePrefix("10.2.0.0/24")
	subnetD = netip.MustParsePrefix("10.3.0.0/24")
	dbA     = netip.MustParseAddr("10.1.0.2")
	webA    = netip.MustParseAddr("10.1.0.3")
	loneB   = netip.MustParseAddr("10.2.0.2")
	bothA   = netip.MustParseAddr("10.1.0.4")
	bothB   = netip.MustParseAddr("10.2.0.3")
	def1    = netip.MustParseAddr("10.3.0.2")
	db6     = netip.MustParseAddr("fd00:1::2")
)

// testServer has networks A and B with names and a default network D
// without; every container forwards to up.
func testServer(t *testing.T, up *upstream, cfg Config) *Server {
	t.Helper()
	ups := []netip.AddrPort{up.addr}
	cfg.ResolvConf = "/nonexistent"
	cfg.Upstreams = ups
	s := New(cfg)
	s.SetTable(NewTable([]Entry{
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "db1", DNSNames: []string{"db", "database", "db1short"}, Addrs: []netip.Addr{dbA, db6}, Upstreams: ups},
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "web1", DNSNames: []string{"web"}, Addrs: []netip.Addr{webA}, Upstreams: ups},
		{Network: "B", NetworkName: "other", Names: true, Subnets: []netip.Prefix{subnetB}, Container: "lone1", DNSNames: []string{"lone"}, Addrs: []netip.Addr{loneB}, Upstreams: ups},
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "both1", DNSNames: []string{"both"}, Addrs: []netip.Addr{bothA}, Upstreams: ups},
		{Network: "B", NetworkName: "other", Names: true, Subnets: []netip.Prefix{subnetB}, Container: "both1", DNSNames: []string{"both"}, Addrs: []netip.Addr{bothB}, Upstreams: ups},
		{Network: "D", NetworkName: "bridge", Names: false, Subnets: []netip.Prefix{subnetD}, Container: "def1", DNSNames: []string{"def"}, Addrs: []netip.Addr{def1}, Upstreams: ups},
	}))
	return s
}

func ask(t *testing.T, s *Server, from netip.Addr, name string, qtype uint16, tcp bool) *dns.Msg {
	t.Helper()
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	raw, err := q.Pack()
	if err != nil {
		t.Fatal(err)
	}
	out := s.Handle(t.Context(), from, raw, tcp)
	if out == nil {
		t.Fatalf("no reply to %s from %s", name, from)
	}
	r := new(dns.Msg)
	if err := r.Unpack(out); err != nil {
		t.Fatalf("reply to %s does not unpack: %v", name, err)
	}
	if r.Id != q.Id || !r.Response {
		t.Fatalf("reply id %d response %v, want id %d", r.Id, r.Response, q.Id)
	}
	return r
}

func addrsOf(m *dns.Msg) []string {
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

func TestAnswers(t *testing.T) {
	up := newUpstream(t)
	s := testServer(t, up, Config{})
	arpa4, _ := dns.ReverseAddr(dbA.String())
	arpa6, _ := dns.ReverseAddr(db6.String())
	arpaB, _ := dns.ReverseAddr(loneB.String())
	for _, tc := range []struct {
		name  string
		from  netip.Addr
		q     string
		qtype uint16
		rcode int
		want  []string
		// forwarded says the upstream must have seen the query.
		forwarded bool
	}{
		{"name", webA, "db.", dns.TypeA, dns.RcodeSuccess, []string{dbA.String()}, false},
		{"alias, any case", webA, "DataBase.", dns.TypeA, dns.RcodeSuccess, []string{dbA.String()}, false},
		{"short id", webA, "db1short.", dns.TypeA, dns.RcodeSuccess, []string{dbA.String()}, false},
		{"name.network", webA, "db.app.", dns.TypeA, dns.RcodeSuccess, []string{dbA.String()}, false},
		{"aaaa", webA, "db.", dns.TypeAAAA, dns.RcodeSuccess, []string{db6.String()}, false},
		{"aaaa of a v4-only container is NODATA", dbA, "web.", dns.TypeAAAA, dns.RcodeSuccess, nil, false},
		{"mx of a container is NODATA", webA, "db.", dns.TypeMX, dns.RcodeSuccess, nil, false},
		{"ptr", webA, arpa4, dns.TypePTR, dns.RcodeSuccess, []string{"db.app."}, false},
		{"ptr v6", webA, arpa6, dns.TypePTR, dns.RcodeSuccess, []string{"db.app."}, false},
		{"ptr of another network's container is forwarded", webA, arpaB, dns.TypePTR, dns.RcodeNameError, nil, true},
		{"another network's name is forwarded", loneB, "db.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"a container on two networks sees both", bothA, "lone.", dns.TypeA, dns.RcodeSuccess, []string{loneB.String()}, false},
		{"from its second address too", bothB, "db.", dns.TypeA, dns.RcodeSuccess, []string{dbA.String()}, false},
		{"the first network's address of a name on two", webA, "both.", dns.TypeA, dns.RcodeSuccess, []string{bothA.String()}, false},
		{"the default network has no names", def1, "def.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"other names are forwarded", webA, "up.test.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"a known subnet's unknown source forwards", netip.MustParseAddr("10.1.0.99"), "up.test.", dns.TypeA, dns.RcodeSuccess, []string{"192.0.2.1"}, true},
		{"an unknown source's own names are not answered", netip.MustParseAddr("10.1.0.99"), "web.", dns.TypeA, dns.RcodeNameError, nil, true},
		{"sources outside every subnet are refused", netip.MustParseAddr("192.0.2.77"), "db.", dns.TypeA, dns.RcodeRefused, nil, false},
	} {
		for _, tcp := range []bool{false, true} {
			up.reset()
			r := ask(t, s, tc.from, tc.q, tc.qtype, tcp)
			if r.Rcode != tc.rcode || !slices.Equal(addrsOf(r), tc.want) {
				t.Errorf("%s (tcp %v): rcode %s answers %v, want %s %v", tc.name, tcp, dns.RcodeToString[r.Rcode], addrsOf(r), dns.RcodeToString[tc.rcode], tc.want)
			}
			if up.seen(tc.q) != tc.forwarded {
				t.Errorf("%s (tcp %v): forwarded %v, want %v", tc.name, tcp, up.seen(tc.q), tc.forwarded)
			}
		}
	}
	r := ask(t, s, webA, "db.", dns.TypeA, false)
	if !r.Authoritative || !r.RecursionAvailable || r.Answer[0].Header().Ttl != ttl {
		t.Errorf("local answer header %+v ttl %d", r.MsgHdr, r.Answer[0].Header().Ttl)
	}
}

func TestTruncation(t *testing.T) {
	up := newUpstream(t)
	s := testServer(t, up, Config{})
	udp := ask(t, s, webA, "big.test.", dns.TypeTXT, false)
	if !udp.Truncated {
		t.Errorf("a big answer over UDP is not truncated (%d answers)", len(udp.Answer))
	}
	tcp := ask(t, s, webA, "big.test.", dns.TypeTXT, true)
	if tcp.Truncated || len(tcp.Answer) != 40 {
		t.Errorf("over TCP: truncated %v with %d answers, want all 40", tcp.Truncated, len(tcp.Answer))
	}
}

func TestMalformed(t *testing.T) {
	up := newUpstream(t)
	s := testServer(t, up, Config{})
	q := new(dns.Msg)
	q.SetQuestion("db.", dns.TypeA)
	good, _ := q.Pack()
	long := make([]byte, 0, 600)
	long = append(long, good[:12]...)
	// A question whose name has 5 labels of 63 bytes: 320 bytes of wire
	// name, beyond the 255 a name may have.
	for range 5 {
		long = append(long, 63)
		for range 63 {
			long = append(long, 'a')
		}
	}
	long = append(long, 0, 0, 1, 0, 1)
	twoQ := new(dns.Msg)
	twoQ.Question = []dns.Question{{Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "b.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}
	twoQ.Id = 99
	twoRaw, _ := twoQ.Pack()
	notify := new(dns.Msg)
	notify.SetNotify("app.")
	notifyRaw, _ := notify.Pack()
	resp := new(dns.Msg)
	resp.SetQuestion("db.", dns.TypeA)
	resp.Response = true
	respRaw, _ := resp.Pack()
	for _, tc := range []struct {
		name  string
		raw   []byte
		rcode int // -1: no reply
	}{
		{"empty", nil, -1},
		{"short header", good[:7], -1},
		{"header and garbage", append(append([]byte{}, good[:12]...), 0xff, 0xff, 0xff), dns.RcodeFormatError},
		{"truncated question", good[:len(good)-2], dns.RcodeFormatError},
		{"name longer than 255", long, dns.RcodeFormatError},
		{"two questions", twoRaw, dns.RcodeFormatError},
		{"notify", notifyRaw, dns.RcodeNotImplemented},
		{"a response", respRaw, -1},
	} {
		out := s.Handle(t.Context(), webA, tc.raw, false)
		if tc.rcode < 0 {
			if out != nil {
				t.Errorf("%s: replied %x, want silence", tc.name, out)
			}
			continue
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Errorf("%s: reply %x does not unpack: %v", tc.name, out, err)
			continue
		}
		if r.Rcode != tc.rcode || !r.Response || r.Id != binary.BigEndian.Uint16(tc.raw[:2]) {
			t.Errorf("%s: rcode %s id %d, want %s id %d", tc.name, dns.RcodeToString[r.Rcode], r.Id, dns.RcodeToString[tc.rcode], binary.BigEndian.Uint16(tc.raw[:2]))
		}
	}
}

func TestClientLimits(t *testing.T) {
	up := newUpstream(t)
	s := testServer(t, up, Config{ClientRate: 1, ClientBurst: 5, ClientForwards: 2, ForwardTimeout: 500 * time.Millisecond})
	for i := range 5 {
		if r := ask(t, s, webA, "db.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d within the burst: %s", i, dns.RcodeToString[r.Rcode])
		}
	}
	if r := ask(t, s, webA, "db.", dns.TypeA, false); r.Rcode != dns.RcodeRefused {
		t.Errorf("query beyond the burst: %s, want REFUSED", dns.RcodeToString[r.Rcode])
	}
	if r := ask(t, s, dbA, "web.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess {
		t.Errorf("another client after the first one's burst: %s", dns.RcodeToString[r.Rcode])
	}

	// Forwards in flight: two slow ones fill loneB's slots; the third is
	// refused at once, and other clients still forward.
	q := new(dns.Msg)
	q.SetQuestion("slow.test.", dns.TypeA)
	raw, _ := q.Pack()
	var pend []*pending
	for range 2 {
		r, p, _ := s.prepare(loneB, raw, false)
		if p == nil {
			t.Fatalf("slow query not forwarded: %v", r)
		}
		pend = append(pend, p)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for _, p := range pend {
		wg.Go(func() { s.resolve(ctx, p) })
	}
	if r, p, _ := s.prepare(loneB, raw, false); p != nil || r.Rcode != dns.RcodeRefused {
		t.Errorf("third forward in flight: %v, want REFUSED at once", r)
	}
	if r := ask(t, s, dbA, "up.test.", dns.TypeA, false); r.Rcode != dns.RcodeSuccess {
		t.Errorf("another client's forward while one is saturated: %s", dns.RcodeToString[r.Rcode])
	}
	cancel()
	wg.Wait()
}

func TestServerFailsWhenUpstreamsDo(t *testing.T) {
	s := New(Config{ResolvConf: "/nonexistent", ForwardTimeout: 200 * time.Millisecond})
	// An upstream that does not exist (a closed port).
	pc, _ := net.ListenPacket("udp", "127.0.0.1:0")
	dead := netip.MustParseAddrPort(pc.LocalAddr().String())
	pc.Close()
	s.SetTable(NewTable([]Entry{{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "web1", DNSNames: []string{"web"}, Addrs: []netip.Addr{webA}, Upstreams: []netip.AddrPort{dead}}}))
	if r := ask(t, s, webA, "up.test.", dns.TypeA, false); r.Rcode != dns.RcodeServerFailure {
		t.Errorf("all upstreams down: %s, want SERVFAIL", dns.RcodeToString[r.Rcode])
	}
}

func TestReverseName(t *testing.T) {
	for _, a := range []string{"10.1.0.2", "255.0.255.1", "fd00::1", "2001:db8::dead:beef"} {
		arpa, _ := dns.ReverseAddr(a)
		got, ok := reverseName(canonical(arpa))
		if !ok || got != netip.MustParseAddr(a) {
			t.Errorf("reverseName(%s) = %v, %v", arpa, got, ok)
		}
	}
	for _, bad := range []string{"1.2.3.in-addr.arpa", "256.1.1.1.in-addr.arpa", "01.1.1.1.in-addr.arpa", "x.in-addr.arpa", "1.ip6.arpa", "in-addr.arpa", "a.b.c.d.in-addr.arpa"} {
		if a, ok := reverseName(bad); ok {
			t.Errorf("reverseName(%s) = %v, want no address", bad, a)
		}
	}
}

func TestHostServers(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/resolv.conf"
	if err := writeFile(p, "# c\nnameserver 127.0.0.53\nnameserver fd00::53\nnameserver bogus\nsearch a.example\n"); err != nil {
		t.Fatal(err)
	}
	got := HostServers(p)
	want := []netip.AddrPort{netip.MustParseAddrPort("127.0.0.53:53"), netip.MustParseAddrPort("[fd00::53]:53")}
	if !slices.Equal(got, want) {
		t.Errorf("HostServers = %v, want %v", got, want)
	}
	if got := HostServers(dir + "/missing"); len(got) != 0 {
		t.Errorf("missing file: %v", got)
	}
}

// FuzzHandle feeds arbitrary packets to the request handling: no panic, and
// any reply is a well-formed response to the query's ID.
func FuzzHandle(f *testing.F) {
	for _, name := range []string{"db.", "db.app.", "up.test.", "2.0.1.10.in-addr.arpa."} {
		q := new(dns.Msg)
		q.SetQuestion(name, dns.TypeA)
		q.SetEdns0(4096, false)
		raw, _ := q.Pack()
		f.Add(raw, false)
		f.Add(raw, true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false) // a pointer loop
	f.Add([]byte{}, false)
	srv := New(Config{ResolvConf: "/nonexistent", ForwardTimeout: 10 * time.Millisecond, ClientRate: 1e9, ClientBurst: 1 << 30})
	// Forwards go nowhere (no upstreams): SERVFAIL, quickly.
	srv.SetTable(NewTable([]Entry{
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "db1", DNSNames: []string{"db"}, Addrs: []netip.Addr{dbA, db6}},
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "web1", DNSNames: []string{"web"}, Addrs: []netip.Addr{webA}},
	}))
	f.Fuzz(func(t *testing.T, raw []byte, tcp bool) {
		out := srv.Handle(context.Background(), webA, raw, tcp)
		if out == nil {
			return
		}
		r := new(dns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("reply %x to %x does not unpack: %v", out, raw, err)
		}
		if !r.Response || len(raw) < 2 || r.Id != binary.BigEndian.Uint16(raw[:2]) {
			t.Fatalf("reply %v to %x: not a response to its ID", r, raw)
		}
		if !tcp && len(out) > dns.MaxMsgSize {
			t.Fatalf("UDP reply of %d bytes", len(out))
		}
		if tcp {
			return
		}
		// A UDP reader answers as Handle does, the first time and from
		// its packet cache, whatever the ID (a name may point into it).
		rd := newReader(srv)
		for i := range 3 {
			q := append([]byte(nil), raw...)
			if i == 2 && len(q) >= 2 {
				q[0], q[1] = q[0]^0x5a, q[1]^0xa5
			}
			got, p := rd.answer(webA, q)
			if p != nil {
				got = pack(srv.resolve(context.Background(), p))
			}
			want := srv.Handle(context.Background(), webA, q, false)
			if string(got) != string(want) {
				t.Fatalf("reader's reply %d to %x: %x, Handle's %x", i, q, got, want)
			}
		}
	})
}

func writeFile(p, s string) error { return os.WriteFile(p, []byte(s), 0o644) }
