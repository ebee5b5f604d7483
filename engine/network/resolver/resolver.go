// Package resolver is the DNS responder of Berth's user-defined networks
// (github.com/miekg/dns for the wire format).
//
// Contract:
//   - One Server serves every network; it listens on each network's gateway
//     address, port 53, UDP and TCP (Listen), in berthd's own (the host's)
//     network namespace. A container's resolv.conf names the gateway of its
//     first network with names.
//   - A query is answered for the container that sent it, found by its
//     source address in the current Table: the names of the networks it is
//     on (container names, aliases, short IDs, hostnames, and
//     name.network), A and AAAA, and PTR for their addresses. A name that
//     is known but has no address of the asked family, or a type other
//     than A/AAAA, gets an empty NOERROR answer.
//   - Everything else is forwarded, from the host's namespace, to the
//     container's own servers (docker run --dns) or else the host's (read
//     from resolv.conf, re-read when it changes), so a loopback stub such
//     as 127.0.0.53 works. A truncated UDP answer is passed on truncated
//     (the client retries over TCP); a TCP query is forwarded over TCP.
//   - Sources outside every network's subnets get REFUSED. Malformed
//     queries get FORMERR (when the header can be read at all), opcodes
//     other than QUERY get NOTIMP, responses are ignored.
//   - Fairness: each source address has a token bucket (Config.ClientRate
//     queries a second, Config.ClientBurst at once) and at most
//     Config.ClientForwards forwards in flight; beyond them it gets REFUSED
//     at once. Local answers cost microseconds and are made on the reading
//     goroutine; forwards run on their own goroutines (at most
//     Config.MaxForwards in all). A flood from one container therefore
//     costs the others neither CPU nor forwarding slots.
//   - A listener whose socket fails, or that stops answering its own probe,
//     is closed and opened again (after Listen's ensure callback, which
//     puts the gateway address back), with a backoff.
package resolver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/time/rate"
)

// Port is where the server listens on each address.
const Port = 53

// Config tunes a Server. Zero fields take the defaults.
type Config struct {
	// ResolvConf is the host's resolver config, for the upstream servers
	// (default /etc/resolv.conf).
	ResolvConf string
	// Upstreams, when set, replace the servers of ResolvConf (berthd's
	// dns setting, Docker's daemon.json "dns").
	Upstreams []netip.AddrPort
	// ClientRate and ClientBurst bound one source's queries (default 2000
	// a second, bursts of 4000).
	ClientRate  float64
	ClientBurst int
	// ClientForwards bounds one source's forwards in flight (default 128).
	ClientForwards int
	// MaxForwards bounds all forwards in flight (default 1024).
	MaxForwards int
	// ForwardTimeout bounds one upstream exchange (default 3s).
	ForwardTimeout time.Duration
	// ProbeInterval is how often each listener's health is checked
	// (default 5s).
	ProbeInterval time.Duration
	// Logger gets restarts and failures; nil discards.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.ClientRate <= 0 {
		c.ClientRate = 2000
	}
	if c.ClientBurst <= 0 {
		c.ClientBurst = 4000
	}
	if c.ClientForwards <= 0 {
		c.ClientForwards = 128
	}
	if c.MaxForwards <= 0 {
		c.MaxForwards = 1024
	}
	if c.ForwardTimeout <= 0 {
		c.ForwardTimeout = 3 * time.Second
	}
	if c.ProbeInterval <= 0 {
		c.ProbeInterval = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// Server answers queries from containers. It is safe for concurrent use.
type Server struct {
	cfg   Config
	table atomic.Pointer[Table]

	// forwards counts the forwards in flight.
	forwards chan struct{}

	// clients holds a *clientState per source address.
	clients sync.Map
	// ours are the addresses the server listens on (copy on write): never
	// forwarded to, and a query from one is the listener's own probe.
	ours atomic.Pointer[map[netip.Addr]bool]

	mu        sync.Mutex
	listeners map[netip.Addr]*listener
	// host caches the host's upstreams by resolv.conf's mtime.
	host hostUpstreams
}

// clientState is one source address's limits.
type clientState struct {
	limiter  *rate.Limiter
	inflight atomic.Int32
	lastSeen atomic.Int64
}

type hostUpstreams struct {
	mtime   time.Time
	size    int64
	checked time.Time
	servers []netip.AddrPort
}

// New returns a Server with an empty table.
func New(cfg Config) *Server {
	cfg.defaults()
	s := &Server{
		cfg:       cfg,
		forwards:  make(chan struct{}, cfg.MaxForwards),
		listeners: map[netip.Addr]*listener{},
	}
	s.ours.Store(&map[netip.Addr]bool{})
	s.table.Store(NewTable(nil))
	return s
}

// SetTable replaces the names the server answers.
func (s *Server) SetTable(t *Table) {
	if t == nil {
		t = NewTable(nil)
	}
	s.table.Store(t)
	// Forget the limits of sources that are gone and idle for a minute.
	cutoff := time.Now().Add(-time.Minute).UnixNano()
	s.clients.Range(func(k, v any) bool {
		c := v.(*clientState)
		if _, ok := t.clients[k.(netip.Addr)]; !ok && c.lastSeen.Load() < cutoff && c.inflight.Load() == 0 {
			s.clients.Delete(k)
		}
		return true
	})
}

func (s *Server) clientState(addr netip.Addr, now time.Time) *clientState {
	v, ok := s.clients.Load(addr)
	if !ok {
		v, _ = s.clients.LoadOrStore(addr, &clientState{limiter: rate.NewLimiter(rate.Limit(s.cfg.ClientRate), s.cfg.ClientBurst)})
	}
	c := v.(*clientState)
	c.lastSeen.Store(now.UnixNano())
	return c
}

// allow takes one of addr's tokens.
func (s *Server) allow(addr netip.Addr) (*clientState, bool) {
	now := time.Now()
	st := s.clientState(addr, now)
	return st, st.limiter.AllowN(now, 1)
}

// query is one request being answered.
type query struct {
	client netip.Addr
	tcp    bool
	// maxSize is what the reply may take over UDP.
	maxSize int
}

// Handle answers one raw query from client; tcp says how it came. It
// returns the raw reply, or nil when nothing must be sent (a response, or
// garbage without a readable header). A forwarded query blocks until the
// upstream answers; the listeners use prepare and resolve instead, so that
// only forwards leave the reading goroutine.
func (s *Server) Handle(ctx context.Context, client netip.Addr, raw []byte, tcp bool) []byte {
	resp, p, _ := s.prepare(client, raw, tcp)
	if p != nil {
		resp = s.resolve(ctx, p)
	}
	return pack(resp)
}

// pack encodes a reply; nil stays nil.
func pack(resp *dns.Msg) []byte {
	if resp == nil {
		return nil
	}
	out, err := resp.Pack()
	if err != nil {
		// A reply that does not pack (an upstream's odd record): tell the
		// client, keeping the question out of it.
		fail := new(dns.Msg)
		fail.Id = resp.Id
		fail.Response = true
		fail.Opcode = resp.Opcode
		fail.Rcode = dns.RcodeServerFailure
		out, _ = fail.Pack()
	}
	return out
}

// pending is a query that needs forwarding; it holds a forwarding slot of
// its client and one of the server's until resolve releases them.
type pending struct {
	req *dns.Msg
	c   *client
	st  *clientState
	q   query
}

// prepare answers raw when it can at once (local names, errors, limits)
// and otherwise returns the forward to run. When the reply is an answer
// from the table, local is the request.
func (s *Server) prepare(client netip.Addr, raw []byte, tcp bool) (reply *dns.Msg, fwd *pending, local *dns.Msg) {
	client = client.Unmap()
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		if len(raw) < 12 || req.Response {
			return nil, nil, nil
		}
		// The header was read: say the rest is malformed.
		return errorReply(req, dns.RcodeFormatError), nil, nil
	}
	if req.Response {
		return nil, nil, nil
	}
	defer func() {
		// A bug in answering must cost one query, not the listener.
		if p := recover(); p != nil {
			s.cfg.Logger.Error("dns: panic answering a query", "client", client, "panic", p)
			reply, fwd, local = errorReply(req, dns.RcodeServerFailure), nil, nil
		}
	}()
	if req.Opcode != dns.OpcodeQuery {
		return errorReply(req, dns.RcodeNotImplemented), nil, nil
	}
	if len(req.Question) != 1 {
		return errorReply(req, dns.RcodeFormatError), nil, nil
	}
	// miekg/dns reads a question cut short in its type or class as zeros;
	// the packet is malformed all the same.
	if _, off, err := dns.UnpackDomainName(raw, 12); err != nil || off+4 > len(raw) {
		return errorReply(req, dns.RcodeFormatError), nil, nil
	}
	t := s.table.Load()
	c := t.clients[client]
	if s.isOurs(client) || (c == nil && !t.knownSource(client)) {
		return errorReply(req, dns.RcodeRefused), nil, nil
	}
	st, ok := s.allow(client)
	if !ok {
		return errorReply(req, dns.RcodeRefused), nil, nil
	}
	q := query{client: client, tcp: tcp, maxSize: dns.MinMsgSize}
	if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > q.maxSize {
		q.maxSize = int(opt.UDPSize())
	}
	if r := s.local(req, c); r != nil {
		if !tcp {
			r.Truncate(q.maxSize)
		}
		return r, nil, req
	}
	if st.inflight.Add(1) > int32(s.cfg.ClientForwards) {
		st.inflight.Add(-1)
		return errorReply(req, dns.RcodeRefused), nil, nil
	}
	select {
	case s.forwards <- struct{}{}:
	default:
		st.inflight.Add(-1)
		return errorReply(req, dns.RcodeServerFailure), nil, nil
	}
	return nil, &pending{req: req, c: c, st: st, q: q}, nil
}

// resolve runs a forward and releases its slots.
func (s *Server) resolve(ctx context.Context, p *pending) *dns.Msg {
	defer func() {
		<-s.forwards
		p.st.inflight.Add(-1)
	}()
	return s.forward(ctx, p.req, p.c, p.q)
}

// local answers from the table, or returns nil when the query is not for
// a container's name or address.
func (s *Server) local(req *dns.Msg, c *client) *dns.Msg {
	if c == nil || !c.servesNames() {
		return nil
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET {
		return nil
	}
	name := canonical(q.Name)
	if name == "" {
		return nil
	}
	if q.Qtype == dns.TypePTR {
		addr, ok := reverseName(name)
		if !ok {
			return nil
		}
		target, ok := c.reverse(addr)
		if !ok {
			return nil
		}
		r := reply(req)
		r.Answer = append(r.Answer, &dns.PTR{Hdr: header(q.Name, dns.TypePTR), Ptr: target})
		return r
	}
	addrs, found := c.lookup(name)
	if !found {
		return nil
	}
	r := reply(req)
	for _, a := range addrs {
		switch {
		case q.Qtype == dns.TypeA && a.Is4():
			r.Answer = append(r.Answer, &dns.A{Hdr: header(q.Name, dns.TypeA), A: a.AsSlice()})
		case q.Qtype == dns.TypeAAAA && a.Is6():
			r.Answer = append(r.Answer, &dns.AAAA{Hdr: header(q.Name, dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	// Docker's order varies; a stable one makes answers reproducible.
	return r
}

// ttl of local answers: Docker's resolver uses 600, but containers come
// and go; a short TTL keeps caches in containers honest.
const ttl = 5

func header(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
}

func reply(req *dns.Msg) *dns.Msg {
	r := new(dns.Msg)
	r.SetReply(req)
	r.Authoritative = true
	r.RecursionAvailable = true
	return r
}

func errorReply(req *dns.Msg, rcode int) *dns.Msg {
	r := new(dns.Msg)
	r.Id = req.Id
	r.Response = true
	r.Opcode = req.Opcode
	r.RecursionDesired = req.RecursionDesired
	r.RecursionAvailable = true
	r.Rcode = rcode
	// The question is echoed only when it was read whole.
	if rcode != dns.RcodeFormatError && len(req.Question) == 1 {
		r.Question = req.Question
	}
	return r
}

// reverseName parses an in-addr.arpa or ip6.arpa name.
func reverseName(name string) (netip.Addr, bool) {
	if rest, ok := stripSuffix(name, ".in-addr.arpa"); ok {
		var b [4]byte
		labels := splitDots(rest)
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		for i, l := range labels {
			n, ok := atoiByte(l)
			if !ok {
				return netip.Addr{}, false
			}
			b[3-i] = n
		}
		return netip.AddrFrom4(b), true
	}
	if rest, ok := stripSuffix(name, ".ip6.arpa"); ok {
		labels := splitDots(rest)
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			v, ok := hexNibble(l[0])
			if !ok {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

func stripSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return "", false
}

func splitDots(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

func atoiByte(s string) (byte, bool) {
	if s == "" || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}

func hexNibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// forward asks the client's upstreams, in order, until one answers.
func (s *Server) forward(ctx context.Context, req *dns.Msg, c *client, q query) *dns.Msg {
	var ups []netip.AddrPort
	if c != nil && len(c.upstreams) > 0 {
		ups = c.upstreams
	} else {
		ups = s.hostUpstreams()
	}
	network := "udp"
	if q.tcp {
		network = "tcp"
	}
	for _, up := range ups {
		if s.isOurs(up.Addr()) {
			continue
		}
		// The whole answer is read (an upstream may send more than 512
		// bytes without EDNS) and truncated for the client below.
		cl := &dns.Client{Net: network, Timeout: s.cfg.ForwardTimeout, UDPSize: dns.MaxMsgSize}
		fwd := req.Copy()
		r, _, err := cl.ExchangeContext(ctx, fwd, up.String())
		if err != nil || r == nil {
			continue
		}
		if r.Rcode == dns.RcodeServerFailure || r.Rcode == dns.RcodeRefused {
			// Another upstream may know better, as glibc tries the next.
			continue
		}
		r.Id = req.Id
		if !q.tcp {
			r.Truncate(q.maxSize)
		}
		return r
	}
	return errorReply(req, dns.RcodeServerFailure)
}

// hostUpstreams returns the host's servers, re-reading resolv.conf when its
// size or mtime changed (checked at most once a second).
func (s *Server) hostUpstreams() []netip.AddrPort {
	if len(s.cfg.Upstreams) > 0 {
		return s.cfg.Upstreams
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.host.checked) < time.Second && s.host.servers != nil {
		return s.host.servers
	}
	s.host.checked = now
	fi, err := os.Stat(s.cfg.ResolvConf)
	if err != nil {
		s.host.servers = []netip.AddrPort{}
		return s.host.servers
	}
	if s.host.servers != nil && fi.ModTime().Equal(s.host.mtime) && fi.Size() == s.host.size {
		return s.host.servers
	}
	s.host.mtime, s.host.size = fi.ModTime(), fi.Size()
	s.host.servers = HostServers(s.cfg.ResolvConf)
	return s.host.servers
}

// HostServers reads the nameservers of a resolv.conf file, port 53 unless
// the file says otherwise; an unreadable file gives none.
func HostServers(path string) []netip.AddrPort {
	cc, err := dns.ClientConfigFromFile(path)
	if err != nil {
		return []netip.AddrPort{}
	}
	out := []netip.AddrPort{}
	for _, srv := range cc.Servers {
		a, err := netip.ParseAddr(srv)
		if err != nil {
			continue
		}
		port := uint16(53)
		if p, err := net.LookupPort("udp", cc.Port); err == nil && p > 0 && p < 65536 {
			port = uint16(p)
		}
		out = append(out, netip.AddrPortFrom(a.WithZone(""), port))
	}
	return out
}

func (s *Server) isOurs(a netip.Addr) bool {
	return (*s.ours.Load())[a.Unmap()]
}

// errClosed ends a listener's loops.
var errClosed = errors.New("resolver: listener closed")
