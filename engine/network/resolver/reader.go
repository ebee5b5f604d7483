package resolver

import (
	"net/netip"

	"github.com/miekg/dns"
)

// maxCached bounds one reader's packet cache; when full it starts over.
const maxCached = 1024

// reader is the state one UDP reading goroutine reuses from query to
// query, never shared: the buffer replies are packed into, and a packet
// cache of the answers it made from the table.
//
// A local answer depends only on the client (its networks), the query's
// bytes after the ID (name, type, class, flags, EDNS size) and the table:
// the same packet from the same client under the same table gets the same
// reply but for the ID, as long as no name in it points into the header
// (canonicalPacket). So the reply is kept, keyed by client and packet,
// until the table or the server's addresses change, and a container that
// asks the same name again (a resolver loop, glibc's A and AAAA, every
// connection of a client without a cache) is answered by a copy: no
// unpacking, lookup or packing, and no allocation. The rate limit still
// takes a token per query; errors and forwards are never cached.
type reader struct {
	s     *Server
	table *Table
	ours  *map[netip.Addr]bool
	cache map[netip.Addr]map[string][]byte
	n     int
	buf   []byte
}

func newReader(s *Server) *reader {
	return &reader{s: s, buf: make([]byte, 0, dns.MaxMsgSize)}
}

// answer returns the reply to a UDP query from client (nil: none), or the
// forward to run. The reply is valid until the next call.
func (rd *reader) answer(client netip.Addr, raw []byte) ([]byte, *pending) {
	s := rd.s
	if t, ours := s.table.Load(), s.ours.Load(); t != rd.table || ours != rd.ours {
		rd.table, rd.ours = t, ours
		rd.cache, rd.n = nil, 0
	}
	if len(raw) > 12 {
		if cached, ok := rd.cache[client][string(raw[2:])]; ok {
			if _, ok := s.allow(client); ok {
				out := append(rd.buf[:0], cached...)
				out[0], out[1] = raw[0], raw[1]
				return out, nil
			}
			// Over its limit: the packet was a good query, the slow path
			// words the refusal (its token check fails again).
		}
	}
	resp, fwd, local := s.prepare(client, raw, false)
	if fwd != nil || resp == nil {
		return nil, fwd
	}
	out, err := resp.PackBuffer(rd.buf[:cap(rd.buf)])
	if err != nil {
		return pack(resp), nil
	}
	if local != nil && canonicalPacket(local, raw) {
		rd.store(client, raw, out)
	}
	return out, nil
}

// canonicalPacket reports whether raw is req as miekg/dns packs it,
// without compression: a packet whose names point into the header read
// differently with another ID, and cannot be cached by its bytes after
// the ID.
func canonicalPacket(req *dns.Msg, raw []byte) bool {
	if len(raw) <= 12 {
		return false
	}
	c := req.Copy()
	c.Compress = false
	b, err := c.Pack()
	return err == nil && string(b) == string(raw)
}

// store keeps a local answer for client's packet raw.
func (rd *reader) store(client netip.Addr, raw, out []byte) {
	if rd.n >= maxCached || rd.cache == nil {
		rd.cache, rd.n = map[netip.Addr]map[string][]byte{}, 0
	}
	m := rd.cache[client]
	if m == nil {
		m = map[string][]byte{}
		rd.cache[client] = m
	}
	m[string(raw[2:])] = append([]byte(nil), out...)
	rd.n++
}
