package network

import (
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestRootLookupLatency resolves a container's name 1000 times from
// another container's namespace, as hack/bench-network.sh does through the
// docker CLI, and logs the median and p99 (figures, not assertions).
func TestRootLookupLatency(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "lat-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	var nss []string
	for _, name := range []string{"target", "client"} {
		id := ctrID()
		if err := e.m.Register(ctx, Container{ID: id, Name: name, Mode: n.Name}); err != nil {
			t.Fatal(err)
		}
		ns := e.netns(name)
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			t.Fatal(err)
		}
		nss = append(nss, ns)
	}
	gw := n.IPAM.Config[0].Gateway
	var lat []time.Duration
	failed := 0
	err = inNetNS(t, nss[1], func() error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := c.Dial(netip.AddrPortFrom(gw, 53).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 1000 {
			m := new(dns.Msg)
			m.SetQuestion("target.", dns.TypeA)
			r, rtt, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(r.Answer) != 1 {
				failed++
				continue
			}
			lat = append(lat, rtt)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if failed > 0 || len(lat) == 0 {
		t.Fatalf("%d of 1000 lookups failed", failed)
	}
	t.Logf("1000 lookups of a container's name: median %v, p99 %v", lat[len(lat)/2], lat[len(lat)*99/100])
}
