package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A container's published ports, as the portmap plugin with snat writes
// them (nat table, the family of the container's address):
//
//	PREROUTING, OUTPUT: --dst-type LOCAL -j BERTH-DNAT        (shared)
//	BERTH-DNAT: -p tcp [-d hostIP] --dport HP -s SUBNET    -j MARK  (hairpin)
//	BERTH-DNAT: -p tcp [-d hostIP] --dport HP -s 127.0.0.1 -j MARK  (IPv4: localhost)
//	BERTH-DNAT: -p tcp [-d hostIP] --dport HP -j DNAT --to-destination CIP:CP
//	BERTH-POSTROUTING: -m mark --mark 0x2000/0x2000 -j MASQUERADE   (shared)
//
// each commented "berth <network id> <container id>". A mapping without a
// host address is published in both families, one with an address only in
// its own. The FORWARD side is the network's rule that accepts DNATed
// connections (firewall.go). Connections from the host to 127.0.0.1 need
// route_localnet on the bridge, set when a port is published.

// masqMark is what a port's rules set on a hairpin or localhost connection
// so that it is masqueraded; the bit portmap's snat sets (markMasqBit 13),
// so it means the same for a CRI pod's ports.
const masqMark = "0x2000/0x2000"

// portComment is the comment of a container's port rules on network n.
func portComment(networkID, ctrID string) []string {
	return []string{"-m", "comment", "--comment", "berth " + networkID + " " + ctrID}
}

// portMarker is in every rule line of network id's published ports, as
// iptables-save quotes the comment.
func portMarker(id string) string { return `"berth ` + id + ` ` }

// portRulesRE reads a port rule's network and container from its line.
var portRulesRE = regexp.MustCompile(`"berth ([0-9a-f]+) ([^" ]+)"`)

// portRules are the rules that publish ports to ip (the container's
// address with its subnet's length) in ip's family.
func portRules(ports []PortMapping, ip netip.Prefix) [][]string {
	v6 := ip.Addr().Is6()
	var out [][]string
	for _, pm := range ports {
		host := pm.HostIP
		if host.IsValid() && host.IsUnspecified() {
			host = netip.Addr{}
		}
		if host.IsValid() && host.Unmap().Is6() != v6 {
			continue
		}
		base := []string{"-p", pm.Port.Proto, "--dport", strconv.Itoa(int(pm.HostPort))}
		if host.IsValid() {
			base = append(base, "-d", host.Unmap().String())
		}
		rule := func(extra ...string) []string {
			return append(append([]string{}, base...), extra...)
		}
		out = append(out, rule("-s", ip.Masked().String(), "-j", "MARK", "--set-xmark", masqMark))
		if !v6 {
			out = append(out, rule("-s", "127.0.0.1", "-j", "MARK", "--set-xmark", masqMark))
		}
		to := netip.AddrPortFrom(ip.Addr(), pm.Port.Num).String()
		out = append(out, rule("-j", "DNAT", "--to-destination", to))
	}
	return out
}

// portAddrs are the container addresses its ports go to, one per family.
func portAddrs(ip4, ip6 netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range []netip.Prefix{ip4, ip6} {
		if p.IsValid() {
			out = append(out, p)
		}
	}
	return out
}

// publish writes the rules of ctrID's ports on n to its addresses, one
// restore per family. Where it fails nothing of it stays.
func (m *Manager) publish(n *Network, ctrID string, ports []PortMapping, ip4, ip6 netip.Prefix) error {
	addrs := portAddrs(ip4, ip6)
	var done []netip.Prefix
	for _, ip := range addrs {
		v6 := ip.Addr().Is6()
		var b batch
		for _, r := range portRules(ports, ip) {
			b.add("nat", append(append([]string{"-A", chainDNAT}, r...), portComment(n.ID, ctrID)...)...)
		}
		err := m.restore(v6, &b)
		if err != nil {
			// The shared chains are made with the network; someone removed
			// them since (iptables -F, a firewall reload)?
			rs, serr := m.save(v6)
			if serr == nil && m.ensureChains(v6, rs) == nil {
				err = m.restore(v6, &b)
			}
		}
		if err != nil {
			for _, d := range done {
				if uerr := m.unpublishFamily(n.ID, ctrID, ports, d); uerr != nil {
					m.log.Warn("undo published ports", "container", ctrID, "error", uerr)
				}
			}
			return fmt.Errorf("publish ports: %w", err)
		}
		done = append(done, ip)
		if !v6 {
			// Connections from the host to 127.0.0.1 leave through the
			// bridge after DNAT: the kernel drops them as martians unless
			// the bridge routes 127/8.
			if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+n.Bridge+"/route_localnet", []byte("1"), 0o644); err != nil {
				m.log.Warn("enable route_localnet: connections from the host to 127.0.0.1 will not reach published ports", "bridge", n.Bridge, "error", err)
			}
		}
		forgetUDP(ports, v6)
	}
	return nil
}

// unpublish removes the rules publish wrote, in both families at once.
func (m *Manager) unpublish(networkID, ctrID string, ports []PortMapping, ip4, ip6 netip.Prefix) error {
	addrs := portAddrs(ip4, ip6)
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, ip := range addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.unpublishFamily(networkID, ctrID, ports, ip)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("unpublish ports: %w", err)
	}
	return nil
}

// unpublishFamily deletes the rules of ports to ip with one restore that
// names them; if one is missing (the restore fails whole), every rule of
// the container's on the network that the family's tables hold goes, found
// by its comment.
func (m *Manager) unpublishFamily(networkID, ctrID string, ports []PortMapping, ip netip.Prefix) error {
	v6 := ip.Addr().Is6()
	var b batch
	for _, r := range portRules(ports, ip) {
		b.add("nat", append(append([]string{"-D", chainDNAT}, r...), portComment(networkID, ctrID)...)...)
	}
	err := m.restore(v6, &b)
	if err != nil {
		marker := `"berth ` + networkID + ` ` + ctrID + `"`
		err = m.removeRules(v6, func(l string) bool { return strings.Contains(l, marker) })
	}
	forgetUDP(ports, v6)
	return err
}

// forgetUDP deletes the conntrack entries of published UDP ports, as
// portmap does at ADD and DEL: an entry made before the rules changed
// keeps sending a flow where it went (nowhere, or the old container).
func forgetUDP(ports []PortMapping, v6 bool) {
	family := netlink.InetFamily(unix.AF_INET)
	if v6 {
		family = unix.AF_INET6
	}
	for _, pm := range ports {
		if pm.Port.Proto != "udp" {
			continue
		}
		f := &netlink.ConntrackFilter{}
		if f.AddProtocol(unix.IPPROTO_UDP) != nil || f.AddPort(netlink.ConntrackOrigDstPort, pm.HostPort) != nil {
			continue
		}
		// Best effort: a failure leaves what portmap's would leave.
		_, _ = netlink.ConntrackDeleteFilters(netlink.ConntrackTable, family, f)
	}
}

// sweepPorts removes the port rules of this manager's networks that no
// attached container owns: those of an attach berthd died in after the
// rules and before the record. Another berthd's networks are not ours to
// judge.
func (m *Manager) sweepPorts() {
	m.mu.Lock()
	ours := map[string]bool{}
	for id := range m.networks {
		ours[id] = true
	}
	keep := map[[2]string]bool{}
	for _, c := range m.containers {
		if c.rec.NetNS == "" || len(c.rec.Ports) == 0 {
			continue
		}
		for _, e := range c.rec.Endpoints {
			if e.Primary && e.EndpointID != "" {
				keep[[2]string{e.NetworkID, c.rec.Container.ID}] = true
			}
		}
	}
	m.mu.Unlock()
	for _, v6 := range []bool{false, true} {
		err := m.removeRules(v6, func(l string) bool {
			if !strings.HasPrefix(l, "-A "+chainDNAT+" ") {
				return false
			}
			mm := portRulesRE.FindStringSubmatch(l)
			return mm != nil && ours[mm[1]] && !keep[[2]string{mm[1], mm[2]}]
		})
		if err != nil {
			m.log.Warn("remove the published ports of gone containers", "error", err)
		}
	}
}
