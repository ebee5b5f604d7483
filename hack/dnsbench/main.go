// Command dnsbench measures a container's DNS from inside it: built
// statically and bind-mounted into a container by hack/bench-network.sh,
// it asks the first nameserver of the container's /etc/resolv.conf.
//
//	dnsbench lookup [-n 1000] NAME     sequential A queries for NAME; prints
//	                                   "queries=N failed=F median_us=M p99_us=P"
//	dnsbench flood [-qps 10000] [-d 5s] NAME
//	                                   sends A queries for NAME at that rate,
//	                                   counts the replies; prints
//	                                   "sent=S answered=A"
//
// Exit status 1 on bad usage or when no nameserver is configured.
package main

import (
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "dnsbench:", err)
		os.Exit(1)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: dnsbench lookup|flood [flags] NAME")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	n := fs.Int("n", 1000, "queries (lookup)")
	qps := fs.Int("qps", 10000, "queries a second (flood)")
	dur := fs.Duration("d", 5*time.Second, "how long (flood)")
	resolv := fs.String("resolv", "/etc/resolv.conf", "resolver config")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%s: one NAME expected", args[0])
	}
	cc, err := dns.ClientConfigFromFile(*resolv)
	if err != nil {
		return err
	}
	if len(cc.Servers) == 0 {
		return fmt.Errorf("no nameserver in %s", *resolv)
	}
	server := net.JoinHostPort(cc.Servers[0], cc.Port)
	name := dns.Fqdn(fs.Arg(0))
	switch args[0] {
	case "lookup":
		return lookup(out, server, name, *n)
	case "flood":
		return flood(out, server, name, *qps, *dur)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func lookup(out io.Writer, server, name string, n int) error {
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	conn, err := c.Dial(server)
	if err != nil {
		return err
	}
	defer conn.Close()
	var lat []time.Duration
	failed := 0
	for i := 0; i < n; i++ {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		r, rtt, err := c.ExchangeWithConn(m, conn)
		if err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) == 0 {
			failed++
			continue
		}
		lat = append(lat, rtt)
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pick := func(p int) int64 {
		if len(lat) == 0 {
			return -1
		}
		return lat[(len(lat)-1)*p/100].Microseconds()
	}
	fmt.Fprintf(out, "queries=%d failed=%d median_us=%d p99_us=%d\n", n, failed, pick(50), pick(99))
	return nil
}

func flood(out io.Writer, server, name string, qps int, d time.Duration) error {
	conn, err := net.Dial("udp", server)
	if err != nil {
		return err
	}
	defer conn.Close()
	var answered atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
			answered.Add(1)
		}
	}()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	pkt, err := m.Pack()
	if err != nil {
		return err
	}
	start := time.Now()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	sent := 0
	for time.Since(start) < d {
		<-tick.C
		due := int(time.Since(start).Seconds() * float64(qps))
		for ; sent < due; sent++ {
			_, _ = conn.Write(pkt)
		}
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Fprintf(out, "sent=%d answered=%d\n", sent, answered.Load())
	return nil
}
