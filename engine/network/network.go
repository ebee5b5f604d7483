package network

import (
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Drivers.
const (
	DriverBridge = "bridge"
	DriverHost   = "host"
	DriverNull   = "null"
)

// Predefined network names.
const (
	NameBridge = "bridge"
	NameHost   = "host"
	NameNone   = "none"
)

// Docker's bridge driver options.
const (
	OptBridgeName      = "com.docker.network.bridge.name"
	OptMTU             = "com.docker.network.driver.mtu"
	OptMasquerade      = "com.docker.network.bridge.enable_ip_masquerade"
	OptICC             = "com.docker.network.bridge.enable_icc"
	OptHostBindingIPv4 = "com.docker.network.bridge.host_binding_ipv4"
	OptDefaultBridge   = "com.docker.network.bridge.default_bridge"
)

// Network is a network object: what `docker network inspect` shows, less
// the containers (Manager.NetworkEndpoints).
type Network struct {
	ID      string
	Name    string
	Driver  string
	Created time.Time
	// Internal networks have no route out and publish no ports.
	Internal   bool
	Attachable bool
	EnableIPv6 bool
	IPAM       IPAM
	// Options are the driver options as given (and, for the default
	// network, as Docker reports them).
	Options map[string]string
	Labels  map[string]string

	// Bridge is the kernel bridge (bridge driver only).
	Bridge string
	// MTU of the bridge and the containers' interfaces.
	MTU int
	// Masquerade: outgoing traffic is NATed to the host's address.
	Masquerade bool
	// ICC: containers on the network reach each other.
	ICC bool
	// HostBindingIPv4 is the host address of published ports that name
	// none; invalid means all addresses.
	HostBindingIPv4 netip.Addr
}

// IPAM is a network's address management.
type IPAM struct {
	Driver  string
	Options map[string]string
	Config  []IPAMConfig
}

// IPAMConfig is one subnet of a network.
type IPAMConfig struct {
	Subnet netip.Prefix
	// IPRange is where container addresses are taken from; invalid means
	// the whole subnet.
	IPRange netip.Prefix
	Gateway netip.Addr
	// AuxAddress are addresses kept out of allocation.
	AuxAddress map[string]netip.Addr
}

// Predefined reports whether n is bridge, host or none.
func (n Network) Predefined() bool { return predefined(n.Name) }

// Names reports whether the network serves names by DNS: user-defined
// bridges do, the default bridge does not (as Docker's).
func (n Network) Names() bool { return n.Driver == DriverBridge && n.Name != NameBridge }

func predefined(name string) bool {
	return name == NameBridge || name == NameHost || name == NameNone
}

// subnet4 and subnet6 return the IPv4 and IPv6 configs, if any.
func (n Network) subnet4() (IPAMConfig, bool) {
	for _, c := range n.IPAM.Config {
		if c.Subnet.Addr().Is4() {
			return c, true
		}
	}
	return IPAMConfig{}, false
}

func (n Network) subnet6() (IPAMConfig, bool) {
	for _, c := range n.IPAM.Config {
		if c.Subnet.Addr().Is6() {
			return c, true
		}
	}
	return IPAMConfig{}, false
}

// subnets lists the network's prefixes.
func (n Network) subnets() []netip.Prefix {
	var out []netip.Prefix
	for _, c := range n.IPAM.Config {
		out = append(out, c.Subnet)
	}
	return out
}

func (n Network) clone() Network {
	out := n
	out.Options = maps.Clone(n.Options)
	out.Labels = maps.Clone(n.Labels)
	out.IPAM.Options = maps.Clone(n.IPAM.Options)
	out.IPAM.Config = slices.Clone(n.IPAM.Config)
	for i := range out.IPAM.Config {
		out.IPAM.Config[i].AuxAddress = maps.Clone(out.IPAM.Config[i].AuxAddress)
	}
	return out
}

// CreateOptions are `docker network create`'s.
type CreateOptions struct {
	Name string
	// Driver is bridge (the default); host and null exist once each.
	Driver     string
	Internal   bool
	Attachable bool
	EnableIPv6 bool
	IPAM       IPAM
	Options    map[string]string
	Labels     map[string]string
}

// validName is Docker's rule for container names, applied to networks:
// a network's name becomes a DNS domain, a file name and an iptables
// comment, so what would break any of them is refused up front.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// validateName checks a user-defined network's name.
func validateName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errdefs.ErrInvalidArgument.WithMessage("network name must not be empty")
	case len(name) > 128:
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("network name %q is longer than 128 characters", name))
	case !validName.MatchString(name):
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid network name %q, only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed", name))
	}
	return nil
}

// validBridgeName checks a kernel interface name.
func validBridgeName(name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/ \t\n:") {
		return fmt.Errorf("bridge name %q is not a valid interface name (at most 15 bytes, no '/', ':' or spaces)", name)
	}
	return nil
}

// bridgeOptions reads Docker's bridge driver options into n.
func bridgeOptions(n *Network, opts map[string]string, defaultMTU int) error {
	n.MTU = defaultMTU
	n.Masquerade = true
	n.ICC = true
	for k, v := range opts {
		bad := func(err error) error {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("option %s=%q: %v", k, v, err))
		}
		switch k {
		case OptBridgeName:
			if err := validBridgeName(v); err != nil {
				return bad(err)
			}
			n.Bridge = v
		case OptMTU:
			mtu, err := strconv.Atoi(v)
			if err != nil || mtu < 68 || mtu > 65535 {
				return bad(fmt.Errorf("must be a number between 68 and 65535"))
			}
			n.MTU = mtu
		case OptMasquerade, OptICC:
			b, err := strconv.ParseBool(v)
			if err != nil {
				return bad(err)
			}
			if k == OptMasquerade {
				n.Masquerade = b
			} else {
				n.ICC = b
			}
		case OptHostBindingIPv4:
			a, err := netip.ParseAddr(v)
			if err != nil || !a.Is4() {
				return bad(fmt.Errorf("not an IPv4 address"))
			}
			if !a.IsUnspecified() {
				n.HostBindingIPv4 = a
			}
		}
		// Other options are kept and shown, as Docker does with options
		// its driver does not know.
	}
	return nil
}

// checkIPAM validates the requested subnets: at most one per family,
// IPRange and Gateway inside their subnet, auxiliary addresses too.
func checkIPAM(cfgs []IPAMConfig, ipv6 bool) error {
	var have4, have6 bool
	for i, c := range cfgs {
		bad := func(format string, args ...any) error {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
		}
		if !c.Subnet.IsValid() {
			if c.IPRange.IsValid() || c.Gateway.IsValid() {
				return bad("an ip-range or gateway needs a subnet")
			}
			return bad("IPAM config %d has no subnet", i)
		}
		if c.Subnet != c.Subnet.Masked() {
			// Docker accepts 10.1.2.3/24 and means 10.1.2.0/24.
			cfgs[i].Subnet = c.Subnet.Masked()
			c.Subnet = cfgs[i].Subnet
		}
		if c.Subnet.Addr().Is4() {
			if have4 {
				return bad("only one IPv4 subnet per network is supported")
			}
			have4 = true
			if c.Subnet.Bits() > 30 {
				return bad("subnet %s is too small: a gateway and a container need a /30 at least", c.Subnet)
			}
		} else {
			if have6 {
				return bad("only one IPv6 subnet per network is supported")
			}
			have6 = true
			if !ipv6 {
				return bad("an IPv6 subnet needs --ipv6 (EnableIPv6)")
			}
			if c.Subnet.Bits() > 126 {
				return bad("subnet %s is too small", c.Subnet)
			}
		}
		if c.IPRange.IsValid() {
			r := c.IPRange.Masked()
			cfgs[i].IPRange = r
			if r.Addr().Is4() != c.Subnet.Addr().Is4() || r.Bits() < c.Subnet.Bits() || !c.Subnet.Contains(r.Addr()) {
				return bad("ip-range %s is not inside subnet %s", c.IPRange, c.Subnet)
			}
		}
		if c.Gateway.IsValid() && !c.Subnet.Contains(c.Gateway) {
			return bad("gateway %s is not inside subnet %s", c.Gateway, c.Subnet)
		}
		for name, a := range c.AuxAddress {
			if !c.Subnet.Contains(a) {
				return bad("auxiliary address %s=%s is not inside subnet %s", name, a, c.Subnet)
			}
		}
	}
	if ipv6 && !have6 {
		return errdefs.ErrInvalidArgument.WithMessage("--ipv6 needs an IPv6 --subnet (no IPv6 address pool is configured)")
	}
	return nil
}

// overlaps reports whether two prefixes share an address.
func overlaps(a, b netip.Prefix) bool {
	return a.Overlaps(b)
}
