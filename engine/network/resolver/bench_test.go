package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

func benchServer() (*Server, []byte) {
	s := New(Config{ResolvConf: "/nonexistent", ClientRate: 1e12, ClientBurst: 1 << 40})
	s.SetTable(NewTable([]Entry{
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "db1", DNSNames: []string{"db"}, Addrs: []netip.Addr{dbA}},
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "web1", DNSNames: []string{"web"}, Addrs: []netip.Addr{webA}},
	}))
	q := new(dns.Msg)
	q.SetQuestion("db.", dns.TypeA)
	raw, _ := q.Pack()
	return s, raw
}

// BenchmarkLocalAnswer is the responder's own cost of answering a name
// from the table (no sockets), the first time a client asks it.
func BenchmarkLocalAnswer(b *testing.B) {
	s, raw := benchServer()
	b.ReportAllocs()
	for b.Loop() {
		r, p, _ := s.prepare(webA, raw, false)
		if p != nil || pack(r) == nil {
			b.Fatal("no local answer")
		}
	}
}

// BenchmarkReaderAnswer is a UDP reader's cost of answering a name a
// client asked before (the packet cache), new IDs each time.
func BenchmarkReaderAnswer(b *testing.B) {
	s, raw := benchServer()
	rd := newReader(s)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		raw[0], raw[1] = byte(i>>8), byte(i)
		out, p := rd.answer(webA, raw)
		if p != nil || len(out) < 12 || out[0] != raw[0] || out[1] != raw[1] {
			b.Fatal("no local answer")
		}
	}
}
