package network

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// Network modes of a container (HostConfig.NetworkMode) other than a
// network's name or ID.
const (
	ModeDefault   = "default"
	ModeHost      = "host"
	ModeNone      = "none"
	ModeContainer = "container:"
)

// Container is what the engine tells the manager about a container when it
// creates it (Register); the manager keeps it until Unregister.
type Container struct {
	// ID is the container's 64-hex ID; Name its name without the '/'.
	ID   string
	Name string
	// Hostname and Domainname are the container's (for /etc/hosts and DNS).
	Hostname   string
	Domainname string
	// Mode is HostConfig.NetworkMode: "", "default" or "bridge" for the
	// default network, "host", "none", "container:<id>", or a network's
	// name or ID.
	Mode string
	// Networks are NetworkingConfig.EndpointsConfig, keyed by network name
	// or ID. The network Mode names is joined first (eth0) even when it is
	// not in Networks; the others follow in name order, as Docker does.
	Networks map[string]EndpointConfig
	// PortBindings, ExposedPorts and PublishAll are -p, EXPOSE/--expose
	// and -P.
	PortBindings map[Port][]PortBinding
	ExposedPorts []Port
	PublishAll   bool
	// DNS, DNSSearch and DNSOptions are --dns, --dns-search, --dns-option.
	// On a network with names, DNS servers become the upstreams of the
	// container's queries, and resolv.conf names the network's resolver.
	DNS        []netip.Addr
	DNSSearch  []string
	DNSOptions []string
	// ExtraHosts are --add-host entries, "name:ip" (or "name=ip").
	ExtraHosts []string
	// Links are --link entries on the default network: the target's
	// current address goes into /etc/hosts under the alias.
	Links []Link
}

// Link is one --link: the target container's ID and the alias it is known
// by inside this one.
type Link struct {
	Target string
	Alias  string
}

// EndpointConfig is what a container asks of one network (create's
// EndpointsConfig, connect's EndpointConfig).
type EndpointConfig struct {
	Aliases     []string
	IPv4Address netip.Addr
	IPv6Address netip.Addr
	// MacAddress is the interface's address, "" for a generated one.
	MacAddress string
	DriverOpts map[string]string
	// GwPriority: the endpoint with the highest gives the default route.
	GwPriority int
	// Links are legacy per-endpoint links, kept for inspect.
	Links []string
}

// Endpoint is one network of a container, as inspect shows it
// (NetworkSettings.Networks.<name>). Operational fields are empty while
// the container is not running.
type Endpoint struct {
	NetworkID   string
	NetworkName string
	Config      EndpointConfig
	// EndpointID is set while attached.
	EndpointID string
	// IfName is the interface inside the container (eth0, eth1, ...).
	IfName string
	MAC    string
	IPv4   netip.Prefix
	// Gateway is set on the endpoint that gives the default route.
	Gateway     netip.Addr
	IPv6        netip.Prefix
	IPv6Gateway netip.Addr
	// DNSNames are the names the container answers to on this network:
	// name, aliases, short ID, hostname (none on the default bridge).
	DNSNames []string
}

// Attached reports whether the endpoint is live.
func (e Endpoint) Attached() bool { return e.EndpointID != "" }

// Port is a container port and its protocol ("80/tcp").
type Port struct {
	Num   uint16
	Proto string
}

// ParsePort parses "80", "80/tcp", "53/udp".
func ParsePort(s string) (Port, error) {
	num, proto, _ := strings.Cut(s, "/")
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return Port{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid port %q", s))
	}
	proto = strings.ToLower(proto)
	switch proto {
	case "":
		proto = "tcp"
	case "tcp", "udp", "sctp":
	default:
		return Port{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid protocol %q in port %q", proto, s))
	}
	return Port{Num: uint16(n), Proto: proto}, nil
}

func (p Port) String() string { return strconv.Itoa(int(p.Num)) + "/" + p.Proto }

// MarshalText makes Port a JSON map key ("80/tcp").
func (p Port) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses what MarshalText wrote.
func (p *Port) UnmarshalText(b []byte) error {
	v, err := ParsePort(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// PortBinding is one -p: the host address ("" or invalid for all) and the
// host port: "" or "0" for one the manager picks, "8080", or a range
// "8000-8010" to pick from.
type PortBinding struct {
	HostIP   netip.Addr
	HostPort string
}

// PortMapping is a published port while the container runs.
type PortMapping struct {
	Port     Port
	HostIP   netip.Addr
	HostPort uint16
}

// Settings is NetworkSettings' content: the container's mode, its
// endpoints (eth0 first, then configured-but-not-attached ones), its
// published ports and its namespace.
type Settings struct {
	Mode      string
	Endpoints []Endpoint
	// Ports are the published ports while attached, sorted.
	Ports []PortMapping
	// ExposedPorts are the ports the container exposes (published or not):
	// inspect shows the unpublished ones with no binding.
	ExposedPorts []Port
	// SandboxKey is the network namespace while attached.
	SandboxKey string
}

// Endpoint returns the endpoint on the network with this ID or name.
func (s Settings) Endpoint(network string) (Endpoint, bool) {
	for _, e := range s.Endpoints {
		if e.NetworkID == network || e.NetworkName == network {
			return e, true
		}
	}
	return Endpoint{}, false
}

// isContainerMode reports whether mode shares another container's netns.
func isContainerMode(mode string) bool { return strings.HasPrefix(mode, ModeContainer) }

// modeNetwork is the network the mode names, "" for container:.
func modeNetwork(mode string) string {
	switch {
	case mode == "" || mode == ModeDefault:
		return NameBridge
	case isContainerMode(mode):
		return ""
	}
	return mode
}

// dnsNames builds an endpoint's names as Docker does: name, aliases, short
// ID, hostname, without repeats.
func dnsNames(c *Container, aliases []string) []string {
	var out []string
	add := func(n string) {
		if n != "" && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	add(c.Name)
	for _, a := range aliases {
		add(a)
	}
	add(shortID(c.ID))
	add(c.Hostname)
	return out
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// parseExtraHost splits "name:ip" or "name=ip" (Docker's --add-host; the
// address may be an IPv6 one, which has colons of its own).
func parseExtraHost(s string) (name string, ip string, err error) {
	i := strings.IndexAny(s, ":=")
	if i <= 0 || i == len(s)-1 {
		return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid extra host %q: want name:ip", s))
	}
	name, ip = s[:i], s[i+1:]
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if ip == "host-gateway" {
		return name, ip, nil
	}
	if _, err := netip.ParseAddr(ip); err != nil {
		return "", "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid IP address %q in extra host %q", ip, s))
	}
	return name, ip, nil
}
