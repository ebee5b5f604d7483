package network

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/berth-dev/berth/engine/network/resolver"
	"github.com/berth-dev/berth/internal/logctx"
)

// Benchmarks of the network's share of a container's life, with the real
// plugins, bridges and namespaces (root):
//
//	go test -run XXX -bench Root ./engine/network/
//
// BERTH_TEST_LOG=1 logs each operation's step timings.

// BenchmarkRootAttachDetach is one container's Attach and Detach on a user
// network (the network's part of docker start and stop).
func BenchmarkRootAttachDetach(b *testing.B) {
	e := newEnv(b)
	ctx := logctx.With(b.Context(), e.m.log)
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

// BenchmarkRootAttachDetachPorts is BenchmarkRootAttachDetach for a
// container that publishes a port (docker run -p 8080:80).
func BenchmarkRootAttachDetachPorts(b *testing.B) {
	e := newEnv(b)
	ctx := logctx.With(b.Context(), e.m.log)
	n, err := e.m.Create(ctx, CreateOptions{Name: "bench-" + e.tag})
	if err != nil {
		b.Fatal(err)
	}
	id := ctrID()
	port := uint16(20000 + randInt(20000))
	c := Container{ID: id, Name: "timed", Mode: n.Name, PortBindings: map[Port][]PortBinding{{Num: 80, Proto: "tcp"}: {{HostPort: fmt.Sprint(port)}}}}
	if err := e.m.Register(ctx, c); err != nil {
		b.Fatal(err)
	}
	ns := e.netns("timed")
	var attach, detach time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := e.m.Detach(ctx, id); err != nil {
			b.Fatal(err)
		}
		attach += t1.Sub(t0)
		detach += time.Since(t1)
	}
	b.ReportMetric(float64(attach.Microseconds())/float64(b.N), "attach-us/op")
	b.ReportMetric(float64(detach.Microseconds())/float64(b.N), "detach-us/op")
}

// BenchmarkRootCreateRemove is a user network's creation and removal
// (docker network create and rm: bridge, rules, DNS listener).
func BenchmarkRootCreateRemove(b *testing.B) {
	e := newEnv(b)
	ctx := logctx.With(b.Context(), e.m.log)
	var create, remove time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		n, err := e.m.Create(ctx, CreateOptions{Name: fmt.Sprintf("cr%d-%s", i, e.tag)})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := e.m.Remove(ctx, n.ID); err != nil {
			b.Fatal(err)
		}
		create += t1.Sub(t0)
		remove += time.Since(t1)
	}
	b.ReportMetric(float64(create.Microseconds())/float64(b.N), "create-us/op")
	b.ReportMetric(float64(remove.Microseconds())/float64(b.N), "remove-us/op")
}

// BenchmarkRootLookup is one lookup of a container's name from another
// container's namespace, through the network's responder.
func BenchmarkRootLookup(b *testing.B) {
	e := newEnv(b)
	// Lift the per-container rate limit: the loop asks faster than a
	// container may for long.
	e.crash()
	e.cfg.Resolver = resolver.Config{ClientRate: 1e9, ClientBurst: 1 << 30}
	e.open()
	ctx := logctx.With(b.Context(), e.m.log)
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
