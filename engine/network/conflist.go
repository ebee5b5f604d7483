package network

import (
	"encoding/json"
	"net/netip"
	"path/filepath"
)

// cniName is the network's name inside CNI: libcni's cache and
// host-local's lease directory are keyed by it. The ID, not the user's
// name, so that a network removed and created again under the same name
// never meets the old one's leftovers.
func cniName(n *Network) string { return "berth-" + shortID(n.ID) }

// conflistPath is where a network's conflist lives.
func (m *Manager) conflistPath(n *Network) string {
	return filepath.Join(m.cfg.confDir(), n.Name+".conflist")
}

// variant says what one attachment's conflist carries.
type variant struct {
	// gateway: the container's default route goes through this network.
	// Only one of a container's endpoints may carry it, as two default
	// routes would make an ECMP route out of both; an internal network
	// never does.
	gateway bool
}

// conflist is the CNI config of a bridge network: bridge with host-local
// IPAM on the network's subnets. The file in conf/ is the gateway variant;
// libcni caches the variant each attachment used, and DEL uses the cached
// one.
//
// Masquerading and letting the containers' traffic through FORWARD are
// per-network rules (firewall.go), made once when the network is set up,
// as Docker does, not the bridge plugin's ipMasq and the firewall plugin's
// rules per container: those cost about 90 ms of iptables runs per
// container start and stop, and the bridge plugin's ipMasq rules are left
// behind when a namespace goes first (containernetworking/plugins#810).
// Published ports are the manager's rules too (publish.go), not portmap's.
func (m *Manager) conflist(n *Network, v variant) ([]byte, error) {
	type rng struct {
		Subnet     string `json:"subnet"`
		Gateway    string `json:"gateway,omitempty"`
		RangeStart string `json:"rangeStart,omitempty"`
		RangeEnd   string `json:"rangeEnd,omitempty"`
	}
	type route struct {
		Dst string `json:"dst"`
	}
	var ranges [][]rng
	var routes []route
	for _, c := range n.IPAM.Config {
		r := rng{Subnet: c.Subnet.String(), Gateway: c.Gateway.String()}
		if c.IPRange.IsValid() {
			first, last := rangeBounds(c.IPRange)
			r.RangeStart, r.RangeEnd = first.String(), last.String()
		}
		ranges = append(ranges, []rng{r})
		if v.gateway && !n.Internal {
			if c.Subnet.Addr().Is4() {
				routes = append(routes, route{Dst: "0.0.0.0/0"})
			} else {
				routes = append(routes, route{Dst: "::/0"})
			}
		}
	}
	plugins := []any{
		map[string]any{
			"type":   "bridge",
			"bridge": n.Bridge,
			// The bridge carries the gateway address even on internal
			// networks: the DNS responder listens there.
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"mtu":         n.MTU,
			"capabilities": map[string]bool{
				"ips": true,
				"mac": true,
			},
			"ipam": map[string]any{
				"type":    "host-local",
				"dataDir": m.cfg.ipamDir(),
				"ranges":  ranges,
				"routes":  routes,
			},
		},
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "1.0.0",
		"name":       cniName(n),
		"plugins":    plugins,
	}, "", "  ")
}

// rangeBounds returns the first and last usable addresses of p: for IPv4
// the network and broadcast addresses are left out when p is larger than
// a /31.
func rangeBounds(p netip.Prefix) (netip.Addr, netip.Addr) {
	first := p.Masked().Addr()
	last := lastAddr(p)
	if first.Is4() && p.Bits() < 31 {
		first, last = first.Next(), last.Prev()
	} else if first.Is6() && p.Bits() < 127 {
		first = first.Next()
	}
	return first, last
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range a {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	out, _ := netip.AddrFromSlice(a)
	return out
}
