package network

import (
	"fmt"
	"net/netip"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/engine/network/resolver"
)

// Defaults.
const (
	// DefaultBridgeName is the kernel bridge of the default network
	// "bridge" (Docker's is docker0; the CRI's default conflist uses
	// berth0).
	DefaultBridgeName = "berth-bridge"
	// DefaultMTU is the bridges' MTU when nothing says otherwise.
	DefaultMTU = 1500
)

// Pool is a range that network subnets are cut from: Base split into
// subnets of Size bits (Docker's default-address-pools).
type Pool struct {
	Base netip.Prefix
	Size int
}

// DefaultPools are Docker's: 172.17.0.0/16 to 172.31.0.0/16, then
// 192.168.0.0/16 in /20s.
func DefaultPools() []Pool {
	return []Pool{
		{Base: netip.MustParsePrefix("172.17.0.0/16"), Size: 16},
		{Base: netip.MustParsePrefix("172.18.0.0/15"), Size: 16},
		{Base: netip.MustParsePrefix("172.20.0.0/14"), Size: 16},
		{Base: netip.MustParsePrefix("172.24.0.0/13"), Size: 16},
		{Base: netip.MustParsePrefix("192.168.0.0/16"), Size: 20},
	}
}

// Config configures a Manager.
type Config struct {
	// Root holds the records, the conflists (conf/), the IPAM leases
	// (ipam/) and libcni's cache (cache/); typically <berth root>/network.
	Root string
	// NetNSDir is where the runtime pins network namespaces; Attach
	// refuses others.
	NetNSDir string
	// BinDirs are searched for the CNI plugins (bridge, host-local; and
	// portmap for the DEL of an attachment made when Berth used it).
	BinDirs []string
	// DefaultBridge is the kernel bridge of the network "bridge" (default
	// berth-bridge). Two daemons on one host need different ones.
	DefaultBridge string
	// DefaultSubnet is the default network's subnet. Invalid (the zero
	// value) picks the first free subnet of AddressPools when the network
	// is first recorded; either way a subnet that a host route already
	// covers is refused.
	DefaultSubnet netip.Prefix
	// DefaultGateway is the default network's gateway; invalid means the
	// subnet's first address.
	DefaultGateway netip.Addr
	// MTU of bridges without a com.docker.network.driver.mtu option
	// (default 1500).
	MTU int
	// AddressPools are where automatic subnets come from (default
	// DefaultPools).
	AddressPools []Pool
	// PortMin and PortMax bound the host ports picked for -P and -p
	// without a host port (default: the kernel's ip_local_port_range, as
	// Docker).
	PortMin, PortMax uint16
	// ResolvConf and Hosts are the host's files (default /etc/resolv.conf
	// and /etc/hosts).
	ResolvConf string
	Hosts      string
	// IPTables and IP6Tables are the firewall commands (default iptables
	// and ip6tables from PATH).
	IPTables  string
	IP6Tables string
	// Events receives Docker's network events (create, destroy, connect,
	// disconnect); nil drops them. engine/events' Bus implements it.
	Events Events
	// Resolver tunes the DNS responder (its per-container limits, its
	// probe); its ResolvConf and Logger are the manager's.
	Resolver resolver.Config
}

// Events is where network events go.
type Events interface {
	Log(typ events.Type, action events.Action, id string, attrs map[string]string)
}

// Validate fills defaults and checks the rest.
func (c *Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("network config: %w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if c.Root == "" || !filepath.IsAbs(c.Root) {
		return bad("root %q must be an absolute path", c.Root)
	}
	if c.NetNSDir == "" || !filepath.IsAbs(c.NetNSDir) {
		return bad("netns dir %q must be an absolute path", c.NetNSDir)
	}
	if len(c.BinDirs) == 0 {
		return bad("no CNI plugin directories")
	}
	if c.DefaultBridge == "" {
		c.DefaultBridge = DefaultBridgeName
	}
	if err := validBridgeName(c.DefaultBridge); err != nil {
		return bad("default bridge: %v", err)
	}
	if c.DefaultSubnet.IsValid() {
		if !c.DefaultSubnet.Addr().Is4() || c.DefaultSubnet.Bits() > 30 {
			return bad("default subnet %s must be IPv4 with room for a gateway and a container", c.DefaultSubnet)
		}
		c.DefaultSubnet = c.DefaultSubnet.Masked()
		if c.DefaultGateway.IsValid() && !c.DefaultSubnet.Contains(c.DefaultGateway) {
			return bad("default gateway %s is outside the default subnet %s", c.DefaultGateway, c.DefaultSubnet)
		}
	} else if c.DefaultGateway.IsValid() {
		return bad("a default gateway needs a default subnet")
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 68 || c.MTU > 65535 {
		return bad("mtu %d out of range", c.MTU)
	}
	if len(c.AddressPools) == 0 {
		c.AddressPools = DefaultPools()
	}
	for _, p := range c.AddressPools {
		if !p.Base.IsValid() || p.Size < p.Base.Bits() || p.Size > p.Base.Addr().BitLen()-2 {
			return bad("address pool %s/%d: size must be between the base's %d bits and %d", p.Base, p.Size, p.Base.Bits(), p.Base.Addr().BitLen()-2)
		}
	}
	if c.PortMin == 0 && c.PortMax == 0 {
		c.PortMin, c.PortMax = localPortRange()
	}
	if c.PortMin == 0 || c.PortMin > c.PortMax {
		return bad("port range %d-%d", c.PortMin, c.PortMax)
	}
	if c.ResolvConf == "" {
		c.ResolvConf = "/etc/resolv.conf"
	}
	if c.Hosts == "" {
		c.Hosts = "/etc/hosts"
	}
	if c.IPTables == "" {
		c.IPTables = "iptables"
	}
	if c.IP6Tables == "" {
		c.IP6Tables = "ip6tables"
	}
	return nil
}

func (c *Config) confDir() string   { return filepath.Join(c.Root, "conf") }
func (c *Config) ipamDir() string   { return filepath.Join(c.Root, "ipam") }
func (c *Config) cacheDir() string  { return filepath.Join(c.Root, "cache") }
func (c *Config) netDir() string    { return filepath.Join(c.Root, "networks") }
func (c *Config) ctrDir() string    { return filepath.Join(c.Root, "containers") }
func (c *Config) rootTag() string   { return shortHash(c.Root) }
func (c *Config) bridgeTag() string { return "berth:" + c.rootTag() + ":" }
