package network

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Benchmarks of the network's share of a container's life, with the real
// plugins, bridges and namespaces (root):
//
//	go test -run XXX -bench Root ./engine/network/

// BenchmarkRootAttachDetach is one container's Attach and Detach on a user
// network (the network's part of docker start and stop).
func BenchmarkRootAttachDetach(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "bench-" + e.tag})
	if err != nil {
		b.Fatal(err)
	}
	id := ctrID()
	if err := e.m.Register(ctx, Container{ID: id, Name: "timed", Mode: n.Name}); err != nil {
		b.Fatal(err)
	}
	ns := e.netns("timed")
	var attach time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			b.Fatal(err)
		}
		attach += time.Since(t0)
		if err := e.m.Detach(ctx, id); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-us/op")
}

// BenchmarkRootLookup is one lookup of a container's name from another
// container's namespace, through the network's responder.
func BenchmarkRootLookup(b *testing.B) {
	e := newEnv(b)
	ctx := b.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "lat-" + e.tag})
	if err != nil {
		b.Fatal(err)
	}
	var nss []string
	for _, name := range []string{"target", "client"} {
		id := ctrID()
		if err := e.m.Register(ctx, Container{ID: id, Name: name, Mode: n.Name}); err != nil {
			b.Fatal(err)
		}
		ns := e.netns(name)
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			b.Fatal(err)
		}
		nss = append(nss, ns)
	}
	gw := n.IPAM.Config[0].Gateway
	err = inNetNS(b, nss[1], func() error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		conn, err := c.Dial(netip.AddrPortFrom(gw, 53).String())
		if err != nil {
			return err
		}
		defer conn.Close()
		m := new(dns.Msg)
		m.SetQuestion("target.", dns.TypeA)
		for b.Loop() {
			r, _, err := c.ExchangeWithConn(m, conn)
			if err != nil || len(r.Answer) != 1 {
				return fmt.Errorf("lookup: %v %v", r, err)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}
