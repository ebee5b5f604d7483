package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The manager makes each bridge itself, with its gateway addresses, when
// the network is created (the default one when first used), instead of
// leaving it to the bridge plugin's first ADD: the DNS responder must
// listen on the gateway before any container asks it anything. Each
// bridge's alias (IFLA_IFALIAS) names the root and the network, so that
// start-up finds the bridges of networks whose records are gone.

func shortHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:4])
}

// bridgeAlias marks a bridge as this root's, for network id.
func (m *Manager) bridgeAlias(n *Network) string {
	return m.cfg.bridgeTag() + n.ID
}

// ensureBridge creates n's bridge if missing, sets its MTU, alias and
// gateway addresses, and brings it up. An existing interface of that name
// that is not a bridge, or a bridge of another root, is an error.
func (m *Manager) ensureBridge(n *Network) error {
	link, err := netlink.LinkByName(n.Bridge)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: n.MTU, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		if link, err = netlink.LinkByName(n.Bridge); err != nil {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
	case err != nil:
		return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	}
	if link.Type() != "bridge" {
		return errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("interface %s exists and is not a bridge (%s)", n.Bridge, link.Type()))
	}
	alias := m.bridgeAlias(n)
	if a := link.Attrs().Alias; a != alias {
		if strings.HasPrefix(a, "berth:") {
			return errdefs.ErrAlreadyExists.WithMessage(fmt.Sprintf("bridge %s belongs to another network (%s)", n.Bridge, a))
		}
		if err := netlink.LinkSetAlias(link, alias); err != nil {
			return fmt.Errorf("set alias of bridge %s: %w", n.Bridge, err)
		}
	}
	if link.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(link, n.MTU); err != nil {
			return fmt.Errorf("set mtu of bridge %s: %w", n.Bridge, err)
		}
	}
	have, err := netlink.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("list addresses of bridge %s: %w", n.Bridge, err)
	}
	for _, c := range n.IPAM.Config {
		want := netip.PrefixFrom(c.Gateway, c.Subnet.Bits())
		found := false
		for _, a := range have {
			if p, ok := prefixOf(a.IPNet); ok && p == want {
				found = true
			}
		}
		if found {
			continue
		}
		addr := &netlink.Addr{IPNet: ipNet(want)}
		if c.Gateway.Is6() {
			// No duplicate address detection: the responder binds the
			// gateway at once, which a tentative address refuses.
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := netlink.AddrAdd(link, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("add %s to bridge %s: %w", want, n.Bridge, err)
		}
	}
	if n.EnableIPv6 {
		// A bridge forwards IPv6 only if the kernel lets it.
		_ = os.WriteFile("/proc/sys/net/ipv6/conf/"+n.Bridge+"/disable_ipv6", []byte("0"), 0o644)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring up bridge %s: %w", n.Bridge, err)
		}
	}
	return nil
}

// deleteBridge removes n's bridge if it is there and this root's.
func (m *Manager) deleteBridge(n *Network) error {
	link, err := netlink.LinkByName(n.Bridge)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("find bridge %s: %w", n.Bridge, err)
	}
	if link.Type() != "bridge" || link.Attrs().Alias != m.bridgeAlias(n) {
		// Not made by us (or by another root): leave it.
		return nil
	}
	// The kernel takes the bridge down and out of the namespace (its
	// name, addresses and routes go) 10-20 ms into the deletion, then
	// waits for RCU grace periods before the request returns, 30-45 ms in
	// all here. The bridge is gone for everyone once it is unlisted:
	// return then, and let the kernel finish behind.
	done := make(chan error, 1)
	go func() { done <- netlink.LinkDel(link) }()
	idx := link.Attrs().Index
	poll := time.NewTicker(time.Millisecond)
	defer poll.Stop()
	for {
		select {
		case err := <-done:
			if err != nil && !errors.As(err, &notFound) {
				return fmt.Errorf("delete bridge %s: %w", n.Bridge, err)
			}
			return nil
		case <-poll.C:
			if _, err := netlink.LinkByIndex(idx); errors.As(err, &notFound) {
				return nil
			}
		}
	}
}

// ourBridges returns the bridges whose alias says they are this root's,
// by network ID.
func (m *Manager) ourBridges() (map[string]string, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	tag := m.cfg.bridgeTag()
	out := map[string]string{}
	for _, l := range links {
		if l.Type() != "bridge" {
			continue
		}
		if id, ok := strings.CutPrefix(l.Attrs().Alias, tag); ok {
			out[id] = l.Attrs().Name
		}
	}
	return out, nil
}

// bridgeExists reports whether an interface of that name exists.
func bridgeExists(name string) bool {
	_, err := netlink.LinkByName(name)
	return err == nil
}

// hostRoutes returns the destinations of the host's routes (all tables)
// and the prefixes of its addresses, but the default routes and those on
// the given bridges (ours, which the caller checks against its records).
func hostRoutes(skipBridges map[string]bool) ([]netip.Prefix, error) {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	names := map[int]string{}
	if links, err := netlink.LinkList(); err == nil {
		for _, l := range links {
			names[l.Attrs().Index] = l.Attrs().Name
		}
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil || skipBridges[names[r.LinkIndex]] {
			continue
		}
		p, ok := prefixOf(r.Dst)
		if !ok || p.Bits() == 0 || p.Addr().IsMulticast() || p.Addr().IsLinkLocalUnicast() {
			continue
		}
		// Host routes of the local table (an address's own /32) are
		// covered by the address's subnet route; keep them anyway.
		out = append(out, p)
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// setDefaultRoute points the namespace's default routes at gw4 and gw6
// (either may be invalid) through ifName: when the endpoint that had the
// default route is disconnected live, another one takes it over, as
// Docker moves the gateway.
func setDefaultRoute(nsPath, ifName string, gw4, gw6 netip.Addr) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", ifName, nsPath, err)
	}
	for _, gw := range []netip.Addr{gw4, gw6} {
		if !gw.IsValid() {
			continue
		}
		dst := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			dst = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(dst), Gw: gw.AsSlice()}
		if err := h.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s dev %s: %w", gw, ifName, err)
		}
	}
	return nil
}
