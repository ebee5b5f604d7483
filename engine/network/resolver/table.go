package resolver

import (
	"net/netip"
	"slices"
	"strings"
)

// Entry is one container's endpoint on one network, as the network manager
// knows it.
type Entry struct {
	// Network is the network's ID; NetworkName its name (the domain a
	// PTR answer ends with, and a suffix queries may use: web.app-net).
	Network     string
	NetworkName string
	// Names says whether the network serves names: false for the default
	// bridge, whose containers only get forwarding.
	Names bool
	// Subnets are the network's; a client with an address in them but no
	// entry (the host, a container being attached) gets forwarding only.
	Subnets []netip.Prefix
	// Container is the container's ID.
	Container string
	// DNSNames are the container's names on this network: its name,
	// aliases, short ID and hostname. The first is the PTR answer.
	DNSNames []string
	// Addrs are the container's addresses on this network.
	Addrs []netip.Addr
	// Upstreams are the container's own servers (docker run --dns); empty
	// means the host's.
	Upstreams []netip.AddrPort
}

// Table is an immutable snapshot of what the server answers. The network
// manager builds a new one on every change and hands it to SetTable; the
// server reads it without locks, so a query flood never contends with an
// attach.
type Table struct {
	clients map[netip.Addr]*client
	zones   map[string]*zone
	subnets []netip.Prefix
}

// client is one container seen from its addresses.
type client struct {
	id string
	// zones are the networks the container is on, in attachment order.
	zones     []*zone
	upstreams []netip.AddrPort
}

// zone is one network's names.
type zone struct {
	name   string
	names  bool
	byName map[string][]netip.Addr
	byAddr map[netip.Addr]string
}

// NewTable indexes entries. Names are matched case-insensitively; a name
// that is not a valid DNS label sequence is kept out of the table.
func NewTable(entries []Entry) *Table {
	t := &Table{clients: map[netip.Addr]*client{}, zones: map[string]*zone{}}
	byID := map[string]*client{}
	for _, e := range entries {
		z := t.zones[e.Network]
		if z == nil {
			z = &zone{name: strings.ToLower(e.NetworkName), names: e.Names, byName: map[string][]netip.Addr{}, byAddr: map[netip.Addr]string{}}
			t.zones[e.Network] = z
			for _, s := range e.Subnets {
				if !slices.Contains(t.subnets, s) {
					t.subnets = append(t.subnets, s)
				}
			}
		}
		c := byID[e.Container]
		if c == nil {
			c = &client{id: e.Container, upstreams: e.Upstreams}
			byID[e.Container] = c
		}
		if !slices.Contains(c.zones, z) {
			c.zones = append(c.zones, z)
		}
		for _, a := range e.Addrs {
			t.clients[a.Unmap()] = c
		}
		if !e.Names {
			continue
		}
		for i, n := range e.DNSNames {
			n = canonical(n)
			if n == "" {
				continue
			}
			for _, a := range e.Addrs {
				a = a.Unmap()
				if !slices.Contains(z.byName[n], a) {
					z.byName[n] = append(z.byName[n], a)
				}
				if i == 0 {
					if _, ok := z.byAddr[a]; !ok {
						z.byAddr[a] = n
					}
				}
			}
		}
	}
	return t
}

// canonical lower-cases a name and drops a trailing dot; it returns ""
// for what cannot be a DNS name.
func canonical(n string) string {
	n = strings.ToLower(strings.TrimSuffix(n, "."))
	if n == "" || len(n) > 253 {
		return ""
	}
	// Every label 1 to 63 bytes, without splitting the name (a lookup's
	// path allocates nothing for it).
	start := 0
	for i := 0; i <= len(n); i++ {
		if i == len(n) || n[i] == '.' {
			if l := i - start; l == 0 || l > 63 {
				return ""
			}
			start = i + 1
		}
	}
	return n
}

// knownSource reports whether addr lies in one of the networks' subnets.
func (t *Table) knownSource(addr netip.Addr) bool {
	for _, s := range t.subnets {
		if s.Contains(addr) {
			return true
		}
	}
	return false
}

// lookup returns the addresses of name for c: the first of c's networks
// that has the name wins, as Docker's resolver does. found is true when
// the name belongs to a container (even with no address of the asked
// family), so that the answer is NODATA rather than a forward.
func (c *client) lookup(name string) (addrs []netip.Addr, found bool) {
	for _, z := range c.zones {
		if !z.names {
			continue
		}
		if a, ok := z.byName[name]; ok {
			return a, true
		}
	}
	// name.network: the network's name as a domain.
	for _, z := range c.zones {
		if !z.names {
			continue
		}
		if host, ok := strings.CutSuffix(name, "."+z.name); ok {
			if a, ok := z.byName[host]; ok {
				return a, true
			}
		}
	}
	return nil, false
}

// reverse returns the PTR target of addr for c: name.network.
func (c *client) reverse(addr netip.Addr) (string, bool) {
	for _, z := range c.zones {
		if !z.names {
			continue
		}
		if n, ok := z.byAddr[addr]; ok {
			return n + "." + z.name + ".", true
		}
	}
	return "", false
}

// servesNames reports whether any of c's networks serves names.
func (c *client) servesNames() bool {
	for _, z := range c.zones {
		if z.names {
			return true
		}
	}
	return false
}
