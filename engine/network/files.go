package network

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// hostsHeader is Docker's /etc/hosts for a container with a network
// namespace of its own.
const hostsHeader = "127.0.0.1\tlocalhost\n" +
	"::1\tlocalhost ip6-localhost ip6-loopback\n" +
	"fe00::\tip6-localnet\n" +
	"ff00::\tip6-mcastprefix\n" +
	"ff02::1\tip6-allnodes\n" +
	"ff02::2\tip6-allrouters\n"

// hostsFile builds a container's /etc/hosts: Docker's header, --add-host
// entries, --link entries, and its own addresses under its hostname.
func (m *Manager) hostsFile(c *ctrState) []byte {
	rec := &c.rec
	var b bytes.Buffer
	b.WriteString(hostsHeader)
	for _, h := range rec.Container.ExtraHosts {
		name, ip, err := parseExtraHost(h)
		if err != nil {
			continue // refused at Register; records are trusted
		}
		if ip == "host-gateway" {
			gw := m.hostGateway(rec)
			if !gw.IsValid() {
				continue
			}
			ip = gw.String()
		}
		fmt.Fprintf(&b, "%s\t%s\n", ip, name)
	}
	for _, l := range rec.Container.Links {
		t := m.lookupContainer(l.Target)
		if t == nil {
			continue
		}
		ip := linkAddr(t)
		if !ip.IsValid() {
			continue
		}
		names := []string{l.Alias}
		if t.rec.Container.Name != "" && t.rec.Container.Name != l.Alias {
			names = append(names, t.rec.Container.Name)
		}
		names = append(names, shortID(t.rec.Container.ID))
		fmt.Fprintf(&b, "%s\t%s\n", ip, strings.Join(names, " "))
	}
	host := rec.Container.Hostname
	if host == "" {
		host = shortID(rec.Container.ID)
	}
	names := host
	if d := rec.Container.Domainname; d != "" {
		names = host + "." + d + " " + host
	}
	for _, e := range rec.Endpoints {
		if e.EndpointID == "" {
			continue
		}
		if e.IPv4.IsValid() {
			fmt.Fprintf(&b, "%s\t%s\n", e.IPv4.Addr(), names)
		}
		if e.IPv6.IsValid() {
			fmt.Fprintf(&b, "%s\t%s\n", e.IPv6.Addr(), names)
		}
		// Docker lists the first endpoint's addresses only.
		break
	}
	return b.Bytes()
}

// hostGateway is the address host-gateway means: the gateway of the
// container's first attached endpoint.
func (m *Manager) hostGateway(rec *containerRecord) netip.Addr {
	for _, e := range rec.Endpoints {
		if n := m.networks[e.NetworkID]; n != nil && e.EndpointID != "" {
			if c, ok := n.subnet4(); ok {
				return c.Gateway
			}
		}
	}
	return netip.Addr{}
}

// lookupContainer finds a registered container by ID or name (m.mu held).
func (m *Manager) lookupContainer(ref string) *ctrState {
	if c := m.containers[ref]; c != nil {
		return c
	}
	for _, c := range m.containers {
		if c.rec.Container.Name == ref {
			return c
		}
	}
	return nil
}

// linkAddr is a linked container's first IPv4 address.
func linkAddr(t *ctrState) netip.Addr {
	for _, e := range t.rec.Endpoints {
		if e.EndpointID != "" && e.IPv4.IsValid() {
			return e.IPv4.Addr()
		}
	}
	return netip.Addr{}
}

// resolvConf builds a container's /etc/resolv.conf.
//
// On a network with names, the nameserver is the network's gateway, where
// the responder listens (its forwarding uses the container's --dns
// servers, else the host's), with Docker's ndots:0. On the default bridge
// the host's servers are copied, or --dns; loopback servers cannot be
// reached from a container, so they are replaced by the default bridge's
// gateway, where the responder forwards (Docker falls back to Google's
// servers instead, which an offline host cannot reach).
func (m *Manager) resolvConf(c *ctrState) []byte {
	rec := &c.rec
	host, err := dns.ClientConfigFromFile(m.cfg.ResolvConf)
	if err != nil {
		host = &dns.ClientConfig{Ndots: 1}
	}
	search := host.Search
	if len(rec.Container.DNSSearch) > 0 {
		search = rec.Container.DNSSearch
	}
	if slices.Equal(search, []string{"."}) {
		search = nil
	}
	var servers []string
	var options []string
	names := m.dnsGateways(rec)
	if len(names) > 0 {
		for _, g := range names {
			servers = append(servers, g.String())
		}
		options = append(options, "ndots:0")
	} else {
		for _, s := range rec.Container.DNS {
			servers = append(servers, s.String())
		}
		if len(servers) == 0 {
			for _, s := range host.Servers {
				if a, err := netip.ParseAddr(s); err == nil && !a.IsLoopback() {
					servers = append(servers, s)
				}
			}
		}
		if len(servers) == 0 {
			if gw := m.hostGateway(rec); gw.IsValid() {
				servers = append(servers, gw.String())
			}
		}
		if host.Ndots != 1 {
			options = append(options, "ndots:"+strconv.Itoa(host.Ndots))
		}
	}
	if len(rec.Container.DNSOptions) > 0 {
		options = mergeOptions(options, rec.Container.DNSOptions)
	}
	var b bytes.Buffer
	if len(search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(search, " "))
	}
	for i, s := range servers {
		// The resolver reads three.
		if i == 3 {
			break
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(options, " "))
	}
	return b.Bytes()
}

// mergeOptions adds user options, which replace ones of the same name.
func mergeOptions(base, user []string) []string {
	name := func(o string) string { n, _, _ := strings.Cut(o, ":"); return n }
	var out []string
	for _, o := range base {
		if !slices.ContainsFunc(user, func(u string) bool { return name(u) == name(o) }) {
			out = append(out, o)
		}
	}
	return append(out, user...)
}

// dnsGateways are the gateways of the container's attached endpoints on
// networks with names, in attachment order.
func (m *Manager) dnsGateways(rec *containerRecord) []netip.Addr {
	var out []netip.Addr
	for _, e := range rec.Endpoints {
		n := m.networks[e.NetworkID]
		if n == nil || !n.Names() || e.EndpointID == "" {
			continue
		}
		if c, ok := n.subnet4(); ok && !slices.Contains(out, c.Gateway) {
			out = append(out, c.Gateway)
		}
	}
	return out
}

// writeFiles rewrites the container's /etc/hosts and /etc/resolv.conf in
// place: they are bind-mounted into the container, and a rename would
// leave the container looking at the old file.
func (m *Manager) writeFiles(c *ctrState) error {
	if c.rec.HostsPath != "" {
		if err := writeInPlace(c.rec.HostsPath, m.hostsFile(c)); err != nil {
			return err
		}
	}
	if c.rec.ResolvConfPath != "" {
		if err := writeInPlace(c.rec.ResolvConfPath, m.resolvConf(c)); err != nil {
			return err
		}
	}
	return nil
}

func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, 0); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Truncate(int64(len(data))); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
