package resolver

import (
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

// BenchmarkLocalAnswer is the responder's own cost of answering a name
// from the table (no sockets).
func BenchmarkLocalAnswer(b *testing.B) {
	s := New(Config{ResolvConf: "/nonexistent", ClientRate: 1e12, ClientBurst: 1 << 40})
	s.SetTable(NewTable([]Entry{
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "db1", DNSNames: []string{"db"}, Addrs: []netip.Addr{dbA}},
		{Network: "A", NetworkName: "app", Names: true, Subnets: []netip.Prefix{subnetA}, Container: "web1", DNSNames: []string{"web"}, Addrs: []netip.Addr{webA}},
	}))
	q := new(dns.Msg)
	q.SetQuestion("db.", dns.TypeA)
	raw, _ := q.Pack()
	b.ReportAllocs()
	for b.Loop() {
		r, p := s.prepare(webA, raw, false)
		if p != nil || pack(r) == nil {
			b.Fatal("no local answer")
		}
	}
}
