package dockerapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/network"
)

// Networks serves /networks; *network.Manager implements it. Without one
// the family answers as before (404 for a lookup, 501 for the rest).
type Networks interface {
	Create(ctx context.Context, opts network.CreateOptions) (network.Network, error)
	Get(idOrName string) (network.Network, error)
	List() []network.Network
	NetworkEndpoints(id string) []network.NetworkEndpoint
	Remove(ctx context.Context, idOrName string) error
	Prune(ctx context.Context, keep func(network.Network) bool) ([]string, error)
	Connect(ctx context.Context, containerID, network string, cfg network.EndpointConfig) error
	Disconnect(ctx context.Context, containerID, network string, force bool) error
	// ResolveContainer finds a container by ID, ID prefix or name.
	ResolveContainer(ref string) (string, error)
}

func (s *server) networkRoutes(handle func(string, handlerFunc)) {
	handle("GET /networks", s.networkList)
	handle("GET /networks/{id}", s.networkInspect)
	handle("POST /networks/create", s.networkCreate)
	handle("POST /networks/prune", s.networkPrune)
	handle("POST /networks/{id}/connect", s.networkConnect)
	handle("POST /networks/{id}/disconnect", s.networkDisconnect)
	handle("DELETE /networks/{id}", s.networkRemove)
}

// decodeBody reads a JSON request body into v; an empty body leaves v as
// it is.
func decodeBody(r *http.Request, v any) error {
	if r.Body == nil {
		return nil
	}
	err := json.NewDecoder(r.Body).Decode(v)
	if err == io.EOF {
		return nil
	}
	if err != nil {
		return invalid("invalid JSON: %v", err)
	}
	return nil
}

// networkInspect is Docker's network object with its containers.
func (s *server) networkInspect(w http.ResponseWriter, r *http.Request) error {
	n, err := s.opts.Networks.Get(r.PathValue("id"))
	if err != nil {
		return err
	}
	if scope := r.URL.Query().Get("scope"); scope != "" && scope != "local" {
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", r.PathValue("id")))
	}
	writeJSON(w, http.StatusOK, s.inspectNetwork(n))
	return nil
}

func (s *server) inspectNetwork(n network.Network) dnet.Inspect {
	out := dnet.Inspect{Network: summaryOf(n), Containers: map[string]dnet.EndpointResource{}}
	for _, e := range s.opts.Networks.NetworkEndpoints(n.ID) {
		res := dnet.EndpointResource{Name: e.Name, EndpointID: e.Endpoint.EndpointID, IPv4Address: e.Endpoint.IPv4, IPv6Address: e.Endpoint.IPv6}
		if ep := network.DockerEndpoint(e.Endpoint); len(ep.MacAddress) > 0 {
			res.MacAddress = ep.MacAddress
		}
		out.Containers[e.ContainerID] = res
	}
	return out
}

func summaryOf(n network.Network) dnet.Network {
	out := dnet.Network{
		Name: n.Name, ID: n.ID, Created: n.Created, Scope: "local", Driver: n.Driver,
		EnableIPv4: n.Driver == network.DriverBridge, EnableIPv6: n.EnableIPv6,
		Internal: n.Internal, Attachable: n.Attachable,
		IPAM:    dnet.IPAM{Driver: n.IPAM.Driver, Options: n.IPAM.Options, Config: []dnet.IPAMConfig{}},
		Options: n.Options, Labels: n.Labels,
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for _, c := range n.IPAM.Config {
		out.IPAM.Config = append(out.IPAM.Config, dnet.IPAMConfig{Subnet: c.Subnet, IPRange: c.IPRange, Gateway: c.Gateway, AuxAddress: c.AuxAddress})
	}
	return out
}

// networkFilters are the keys GET /networks takes, as dockerd.
var networkFilters = map[string]bool{"dangling": true, "driver": true, "id": true, "label": true, "name": true, "scope": true, "type": true}

// matchNetwork applies docker's network filters: name and id are regular
// expressions (as docker's filters.Match), driver and scope exact, label
// key or key=value, type builtin or custom, dangling true or false.
func matchNetwork(n network.Network, inUse bool, f map[string][]string) (bool, error) {
	for k := range f {
		if !networkFilters[k] {
			return false, invalid("invalid filter '%s'", k)
		}
	}
	match := func(key, source string) (bool, error) {
		vs := f[key]
		if len(vs) == 0 {
			return true, nil
		}
		for _, v := range vs {
			if v == source {
				return true, nil
			}
			re, err := regexp.Compile(v)
			if err != nil {
				return false, invalid("invalid filter '%s=%s': %v", key, v, err)
			}
			if re.MatchString(source) {
				return true, nil
			}
		}
		return false, nil
	}
	exact := func(key, source string) bool {
		vs := f[key]
		if len(vs) == 0 {
			return true
		}
		for _, v := range vs {
			if v == source {
				return true
			}
		}
		return false
	}
	if ok, err := match("name", n.Name); !ok || err != nil {
		return false, err
	}
	if ok, err := match("id", n.ID); !ok || err != nil {
		return false, err
	}
	if !exact("driver", n.Driver) || !exact("scope", "local") {
		return false, nil
	}
	if !matchLabels(n.Labels, f["label"]) {
		return false, nil
	}
	if vs := f["type"]; len(vs) > 0 {
		ok := false
		for _, v := range vs {
			switch v {
			case "builtin":
				ok = ok || n.Predefined()
			case "custom":
				ok = ok || !n.Predefined()
			default:
				return false, invalid("invalid filter: 'type'='%s'", v)
			}
		}
		if !ok {
			return false, nil
		}
	}
	if vs := f["dangling"]; len(vs) > 0 {
		if len(vs) > 1 {
			return false, invalid(`got more than one value for filter key "dangling"`)
		}
		var dangling bool
		switch strings.ToLower(vs[0]) {
		case "1", "true":
			dangling = true
		case "0", "false":
		default:
			return false, invalid(`invalid value for filter 'dangling', must be "true" (or "1"), or "false" (or "0")`)
		}
		isDangling := !n.Predefined() && !inUse
		if isDangling != dangling {
			return false, nil
		}
	}
	return true, nil
}

// matchLabels reports whether labels has every "key" or "key=value".
func matchLabels(labels map[string]string, want []string) bool {
	for _, v := range want {
		key, val, hasVal := strings.Cut(v, "=")
		got, ok := labels[key]
		if !ok || (hasVal && got != val) {
			return false
		}
	}
	return true
}
