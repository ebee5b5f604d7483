package network

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Published ports are DNAT rules of the manager's own, with no userland
// proxy: the portmap plugin's rules, written in one iptables-restore at
// attach and removed in one at detach, as Docker's bridge driver writes
// its own. portmap ran about twenty iptables commands at each ADD and
// seventeen at each DEL (its DEL was 60-100 ms of a stop), each one an
// exec and a parse of the ruleset. So that a port is not silently taken
// from a host process, or from another container, each published port is
// also reserved: a socket bound (TCP: not listening) to the host address
// and port for as long as the container runs, as docker-proxy holds it. A
// conflict is then the kernel's EADDRINUSE, reported in Docker's words.

// reservation is one bound socket.
type reservation struct {
	fd int
}

func (r *reservation) close() {
	if r != nil && r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// reserve binds proto's socket to ip:port. An invalid ip means all IPv4
// addresses. SCTP is not reserved (not every kernel has it loaded).
func reserve(proto string, ip netip.Addr, port uint16) (*reservation, error) {
	var typ int
	switch proto {
	case "tcp":
		typ = unix.SOCK_STREAM
	case "udp":
		typ = unix.SOCK_DGRAM
	default:
		return &reservation{fd: -1}, nil
	}
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: int(port), Addr: ip.As4()}
	if ip.Is6() && !ip.Is4In6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(port), Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if family == unix.AF_INET6 {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &reservation{fd: fd}, nil
}

// localPortRange is the kernel's ephemeral range, which Docker picks
// host ports from.
func localPortRange() (uint16, uint16) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		f := strings.Fields(string(b))
		if len(f) == 2 {
			lo, err1 := strconv.ParseUint(f[0], 10, 16)
			hi, err2 := strconv.ParseUint(f[1], 10, 16)
			if err1 == nil && err2 == nil && lo > 0 && lo <= hi {
				return uint16(lo), uint16(hi)
			}
		}
	}
	return 32768, 60999
}

// parseHostPort reads a binding's host port: (0, 0) for "pick one",
// (p, p) for one port, (lo, hi) for a range.
func parseHostPort(s string) (uint16, uint16, error) {
	if s == "" {
		return 0, 0, nil
	}
	lo, hi, isRange := strings.Cut(s, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	if err != nil {
		return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid host port %q", s))
	}
	if !isRange {
		return uint16(a), uint16(a), nil
	}
	b, err := strconv.ParseUint(hi, 10, 16)
	if err != nil || b < a || a == 0 {
		return 0, 0, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid host port range %q", s))
	}
	return uint16(a), uint16(b), nil
}

// wantedPorts lists what c publishes: -p bindings, and with -P every
// exposed port that -p does not bind, on a host port picked at start.
func wantedPorts(c *Container) ([]Port, map[Port][]PortBinding, error) {
	ports := map[Port][]PortBinding{}
	for p, bs := range c.PortBindings {
		if p.Num == 0 {
			return nil, nil, errdefs.ErrInvalidArgument.WithMessage("invalid container port 0")
		}
		for _, b := range bs {
			if _, _, err := parseHostPort(b.HostPort); err != nil {
				return nil, nil, err
			}
		}
		ports[p] = bs
	}
	if c.PublishAll {
		for _, p := range c.ExposedPorts {
			if _, ok := ports[p]; !ok {
				ports[p] = []PortBinding{{}}
			}
		}
	}
	keys := make([]Port, 0, len(ports))
	for p := range ports {
		keys = append(keys, p)
	}
	slices.SortFunc(keys, comparePorts)
	return keys, ports, nil
}

func comparePorts(a, b Port) int {
	if a.Num != b.Num {
		return int(a.Num) - int(b.Num)
	}
	return strings.Compare(a.Proto, b.Proto)
}

// allocate reserves host ports for c's bindings. defaultIP is the
// network's host_binding_ipv4 (invalid: all addresses). On error nothing
// stays reserved.
func (m *Manager) allocate(c *Container, defaultIP netip.Addr) (_ []PortMapping, _ []*reservation, retErr error) {
	keys, bindings, err := wantedPorts(c)
	if err != nil {
		return nil, nil, err
	}
	var (
		out  []PortMapping
		held []*reservation
	)
	defer func() {
		if retErr != nil {
			for _, r := range held {
				r.close()
			}
		}
	}()
	for _, p := range keys {
		for _, b := range bindings[p] {
			ip := b.HostIP
			if ip.IsValid() && ip.IsUnspecified() {
				ip = netip.Addr{}
			}
			if !ip.IsValid() {
				ip = defaultIP
			}
			lo, hi, _ := parseHostPort(b.HostPort)
			var (
				r    *reservation
				port uint16
			)
			if lo == 0 {
				r, port, err = m.pickPort(p.Proto, ip)
			} else {
				r, port, err = m.bindRange(p.Proto, ip, lo, hi)
			}
			if err != nil {
				ours := lo != 0 && m.portHeld(c.ID, p.Proto, ip, lo)
				return nil, nil, bindError(c, p, ip, b.HostPort, lo, ours, err)
			}
			held = append(held, r)
			out = append(out, PortMapping{Port: p, HostIP: ip, HostPort: port})
		}
	}
	return out, held, nil
}

// bindRange reserves the first free port of lo..hi.
func (m *Manager) bindRange(proto string, ip netip.Addr, lo, hi uint16) (*reservation, uint16, error) {
	var last error
	for p := uint32(lo); p <= uint32(hi); p++ {
		r, err := reserve(proto, ip, uint16(p))
		if err == nil {
			return r, uint16(p), nil
		}
		last = err
	}
	return nil, 0, last
}

// pickPort reserves a free port of the configured range, starting at a
// random one.
func (m *Manager) pickPort(proto string, ip netip.Addr) (*reservation, uint16, error) {
	lo, hi := uint32(m.cfg.PortMin), uint32(m.cfg.PortMax)
	n := hi - lo + 1
	start := rand.Uint32N(n)
	var last error
	for i := uint32(0); i < n; i++ {
		p := uint16(lo + (start+i)%n)
		r, err := reserve(proto, ip, p)
		if err == nil {
			return r, p, nil
		}
		last = err
	}
	return nil, 0, fmt.Errorf("no free port in %d-%d: %w", lo, hi, last)
}

// portHeld reports whether another container of this manager publishes
// proto's port on an address that overlaps ip (invalid: all addresses).
func (m *Manager) portHeld(id, proto string, ip netip.Addr, port uint16) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for cid, st := range m.containers {
		if cid == id {
			continue
		}
		for _, pm := range st.rec.Ports {
			if pm.HostPort == port && pm.Port.Proto == proto && (!ip.IsValid() || !pm.HostIP.IsValid() || pm.HostIP == ip) {
				return true
			}
		}
	}
	return false
}

// bindError words a failed reservation as Docker does: a port another
// container holds (ours) is "port is already allocated" (Docker's port
// allocator); anything else, a host process's port included, is what the
// userland proxy says when its bind fails.
func bindError(c *Container, p Port, ip netip.Addr, hostPort string, lo uint16, ours bool, err error) error {
	shown := "0.0.0.0"
	if ip.IsValid() {
		shown = ip.String()
	}
	if hostPort == "" {
		hostPort = "0"
	}
	prefix := fmt.Sprintf("driver failed programming external connectivity on endpoint %s (%s)", c.Name, shortID(c.ID))
	if ours && errors.Is(err, unix.EADDRINUSE) {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("%s: Bind for %s:%s failed: port is already allocated", prefix, shown, hostPort))
	}
	family := "tcp4"
	if p.Proto == "udp" {
		family = "udp4"
	}
	if ip.Is6() {
		family = p.Proto + "6"
	}
	return errdefs.ErrUnknown.WithMessage(fmt.Sprintf("%s: Error starting userland proxy: listen %s %s: bind: %v", prefix, family, net.JoinHostPort(shown, strconv.Itoa(int(lo))), err))
}
