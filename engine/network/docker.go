package network

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	dnet "github.com/moby/moby/api/types/network"
)

// Conversions between Docker's API types and the manager's, for the engine
// (create, inspect) and dockerapi (connect, network inspect).

// DockerContainer builds what Register takes from a create request: the
// container's Config, HostConfig and NetworkingConfig. Links stay by name
// ("name:alias"); the manager resolves them among registered containers
// when it writes /etc/hosts.
func DockerContainer(id, name string, cfg *container.Config, hc *container.HostConfig, nc *dnet.NetworkingConfig) (Container, error) {
	c := Container{ID: id, Name: strings.TrimPrefix(name, "/")}
	if cfg != nil {
		c.Hostname, c.Domainname = cfg.Hostname, cfg.Domainname
		for p := range cfg.ExposedPorts {
			c.ExposedPorts = append(c.ExposedPorts, dockerPort(p))
		}
		slices.SortFunc(c.ExposedPorts, comparePorts)
	}
	if hc != nil {
		c.Mode = string(hc.NetworkMode)
		c.PublishAll = hc.PublishAllPorts
		if len(hc.PortBindings) > 0 {
			c.PortBindings = map[Port][]PortBinding{}
			for p, bs := range hc.PortBindings {
				out := []PortBinding{}
				for _, b := range bs {
					out = append(out, PortBinding{HostIP: b.HostIP, HostPort: b.HostPort})
				}
				if len(out) == 0 {
					out = append(out, PortBinding{})
				}
				c.PortBindings[dockerPort(p)] = out
			}
		}
		c.DNS = slices.Clone(hc.DNS)
		c.DNSSearch = slices.Clone(hc.DNSSearch)
		c.DNSOptions = slices.Clone(hc.DNSOptions)
		c.ExtraHosts = slices.Clone(hc.ExtraHosts)
		for _, l := range hc.Links {
			target, alias, ok := strings.Cut(l, ":")
			if !ok {
				alias = target
			}
			target = strings.TrimPrefix(target, "/")
			// Docker stores links as /target:/self/alias.
			if i := strings.LastIndex(alias, "/"); i >= 0 {
				alias = alias[i+1:]
			}
			if target == "" || alias == "" {
				return Container{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid link %q", l))
			}
			c.Links = append(c.Links, Link{Target: target, Alias: alias})
		}
	}
	if nc != nil && len(nc.EndpointsConfig) > 0 {
		c.Networks = map[string]EndpointConfig{}
		for k, es := range nc.EndpointsConfig {
			// The docker CLI keys the default network's endpoint by the
			// mode's name ("default"), not by the network's.
			c.Networks[modeNetwork(k)] = DockerEndpointConfig(es)
		}
	}
	return c, nil
}

func dockerPort(p dnet.Port) Port {
	proto := string(p.Proto())
	if proto == "" {
		proto = "tcp"
	}
	return Port{Num: p.Num(), Proto: proto}
}

// DockerEndpointConfig converts create's or connect's EndpointSettings.
func DockerEndpointConfig(es *dnet.EndpointSettings) EndpointConfig {
	if es == nil {
		return EndpointConfig{}
	}
	out := EndpointConfig{
		Aliases:    slices.Clone(es.Aliases),
		DriverOpts: es.DriverOpts,
		GwPriority: es.GwPriority,
		Links:      slices.Clone(es.Links),
	}
	if ipam := es.IPAMConfig; ipam != nil {
		out.IPv4Address, out.IPv6Address = ipam.IPv4Address, ipam.IPv6Address
	}
	if len(es.MacAddress) > 0 {
		out.MacAddress = net.HardwareAddr(es.MacAddress).String()
	}
	return out
}

// DockerEndpoint is inspect's NetworkSettings.Networks.<name>.
func DockerEndpoint(e Endpoint) *dnet.EndpointSettings {
	out := &dnet.EndpointSettings{
		Aliases:     slices.Clone(e.Config.Aliases),
		Links:       slices.Clone(e.Config.Links),
		DriverOpts:  e.Config.DriverOpts,
		GwPriority:  e.Config.GwPriority,
		NetworkID:   e.NetworkID,
		EndpointID:  e.EndpointID,
		Gateway:     e.Gateway,
		IPv6Gateway: e.IPv6Gateway,
		DNSNames:    slices.Clone(e.DNSNames),
	}
	if e.Config.IPv4Address.IsValid() || e.Config.IPv6Address.IsValid() {
		out.IPAMConfig = &dnet.EndpointIPAMConfig{IPv4Address: e.Config.IPv4Address, IPv6Address: e.Config.IPv6Address}
	}
	if e.IPv4.IsValid() {
		out.IPAddress, out.IPPrefixLen = e.IPv4.Addr(), e.IPv4.Bits()
	}
	if e.IPv6.IsValid() {
		out.GlobalIPv6Address, out.GlobalIPv6PrefixLen = e.IPv6.Addr(), e.IPv6.Bits()
	}
	mac := e.MAC
	if mac == "" {
		mac = e.Config.MacAddress
	}
	if hw, err := net.ParseMAC(mac); err == nil {
		out.MacAddress = dnet.HardwareAddr(hw)
	}
	return out
}

// DockerNetworks is inspect's NetworkSettings.Networks.
func (s Settings) DockerNetworks() map[string]*dnet.EndpointSettings {
	out := map[string]*dnet.EndpointSettings{}
	for _, e := range s.Endpoints {
		out[e.NetworkName] = DockerEndpoint(e)
	}
	return out
}

// DockerPorts is inspect's NetworkSettings.Ports: each published port with
// its bindings, and, while the container runs, each exposed port that is
// not published with none (Docker's null).
func (s Settings) DockerPorts() dnet.PortMap {
	out := dnet.PortMap{}
	if s.SandboxKey == "" && len(s.Ports) == 0 {
		return out
	}
	for _, p := range s.ExposedPorts {
		if dp, ok := dnet.PortFrom(p.Num, dnet.IPProtocol(p.Proto)); ok {
			out[dp] = nil
		}
	}
	for _, pm := range s.Ports {
		dp, ok := dnet.PortFrom(pm.Port.Num, dnet.IPProtocol(pm.Port.Proto))
		if !ok {
			continue
		}
		ip := pm.HostIP
		if !ip.IsValid() {
			ip = netip.IPv4Unspecified()
		}
		out[dp] = append(out[dp], dnet.PortBinding{HostIP: ip, HostPort: fmt.Sprint(pm.HostPort)})
	}
	return out
}

// DockerNetworkSettings is inspect's NetworkSettings (API 1.52+ fields;
// older versions add the legacy top-level fields from Primary).
func (s Settings) DockerNetworkSettings(containerID string) *container.NetworkSettings {
	out := &container.NetworkSettings{
		SandboxKey: s.SandboxKey,
		Ports:      s.DockerPorts(),
		Networks:   s.DockerNetworks(),
	}
	if s.SandboxKey != "" {
		out.SandboxID = containerID
	}
	return out
}

// Primary returns the endpoint Docker's legacy top-level fields
// (NetworkSettings.IPAddress, Gateway, MacAddress, ... below API 1.52)
// come from: the default network's, as Docker fills them for it only.
func (s Settings) Primary() (Endpoint, bool) {
	for _, e := range s.Endpoints {
		if e.NetworkName == NameBridge {
			return e, true
		}
	}
	return Endpoint{}, false
}
