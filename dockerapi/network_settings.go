package dockerapi

import (
	"net/http"
	"net/netip"
	"slices"

	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/network"
)

// legacyNetworkSettings is NetworkSettings as API versions below 1.52
// show it: the default network's endpoint also at the top level, and the
// fields Docker has since dropped.
type legacyNetworkSettings struct {
	Bridge                 string
	SandboxID              string
	HairpinMode            bool
	LinkLocalIPv6Address   string
	LinkLocalIPv6PrefixLen int
	Ports                  dnet.PortMap
	SandboxKey             string
	SecondaryIPAddresses   []any
	SecondaryIPv6Addresses []any
	EndpointID             string
	Gateway                string
	GlobalIPv6Address      string
	GlobalIPv6PrefixLen    int
	IPAddress              string
	IPPrefixLen            int
	IPv6Gateway            string
	MacAddress             string
	Networks               map[string]*dnet.EndpointSettings
}

// networkSettingsJSON is a container's NetworkSettings for container
// inspect as the client's API version (empty: the newest) expects it:
//   - below 1.52 the default network's IPAddress, Gateway, MacAddress, ...
//     also at the top level (empty strings otherwise, as dockerd);
//   - below 1.45 the short container ID among a user network's Aliases
//     (and at any version to docker-compose 1.x, see shortIDAlias);
//   - below 1.44 no DNSNames.
func networkSettingsJSON(s network.Settings, containerID, version string, shortIDAlias bool) any {
	ns := s.DockerNetworkSettings(containerID)
	if shortIDAlias || version != "" && compareVersions(version, "1.45") < 0 {
		short := containerID
		if len(short) > 12 {
			short = short[:12]
		}
		for name, ep := range ns.Networks {
			if e, ok := s.Endpoint(name); ok && len(e.DNSNames) > 0 && !slices.Contains(ep.Aliases, short) {
				ep.Aliases = append(ep.Aliases, short)
			}
		}
	}
	if version != "" && compareVersions(version, "1.44") < 0 {
		for _, ep := range ns.Networks {
			ep.DNSNames = nil
		}
	}
	if version == "" || compareVersions(version, "1.52") >= 0 {
		return ns
	}
	out := legacyNetworkSettings{
		SandboxID: ns.SandboxID, SandboxKey: ns.SandboxKey, Ports: ns.Ports, Networks: ns.Networks,
	}
	if e, ok := s.Primary(); ok && e.Attached() {
		ep := network.DockerEndpoint(e)
		out.EndpointID = ep.EndpointID
		out.Gateway = addrString(ep.Gateway)
		out.IPAddress = addrString(ep.IPAddress)
		out.IPPrefixLen = ep.IPPrefixLen
		out.IPv6Gateway = addrString(ep.IPv6Gateway)
		out.GlobalIPv6Address = addrString(ep.GlobalIPv6Address)
		out.GlobalIPv6PrefixLen = ep.GlobalIPv6PrefixLen
		if len(ep.MacAddress) > 0 {
			out.MacAddress = ep.MacAddress.String()
		}
	}
	return out
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// shortIDAlias says whether container inspect lists the short container
// ID among a user network's Aliases at any API version: for
// docker-compose 1.x, which was written for daemons that always did
// (below API 1.45) and otherwise, before each start, disconnects every
// container from each of its networks and connects it again only to
// add that alias (two network changes per container and network, on
// up's path: ~45 ms each here when the network is already attached).
// The short ID is one of the endpoint's DNS names either way.
func shortIDAlias(r *http.Request) bool {
	return composeV1(r)
}
