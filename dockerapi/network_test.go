package dockerapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	dnet "github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/engine/network"
)

// fakeNetworks keeps networks in memory with the manager's error classes;
// the real manager is exercised by engine/network's root tests and the
// docker CLI end-to-end suite.
type fakeNetworks struct {
	mu       sync.Mutex
	nets     []network.Network
	attached map[string][]string // network ID -> container IDs
	ctrs     map[string]string   // name -> ID
	calls    []string
}

func newFakeNetworks() *fakeNetworks {
	f := &fakeNetworks{attached: map[string][]string{}, ctrs: map[string]string{"web": "c0ffee0000000000000000000000000000000000000000000000000000000000"}}
	for _, n := range []string{"bridge", "host", "none"} {
		f.nets = append(f.nets, network.Network{ID: fakeID(n), Name: n, Driver: map[string]string{"bridge": "bridge", "host": "host", "none": "null"}[n], Created: time.Unix(1000, 0)})
	}
	return f
}

func fakeID(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

func (f *fakeNetworks) find(ref string) (int, error) {
	for i, n := range f.nets {
		if n.ID == ref || n.Name == ref || strings.HasPrefix(n.ID, ref) {
			return i, nil
		}
	}
	return 0, fmt.Errorf("%w: network %s not found", errdefs.ErrNotFound, ref)
}

func (f *fakeNetworks) Create(ctx context.Context, o network.CreateOptions) (network.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, err := f.find(o.Name); err == nil {
		return network.Network{}, fmt.Errorf("%w: network with name %s already exists", errdefs.ErrConflict, o.Name)
	}
	n := network.Network{ID: fakeID(o.Name), Name: o.Name, Driver: "bridge", Created: time.Now(), Internal: o.Internal, EnableIPv6: o.EnableIPv6, Labels: o.Labels, Options: o.Options, IPAM: network.IPAM{Driver: "default", Config: o.IPAM.Config}}
	f.nets = append(f.nets, n)
	return n, nil
}

func (f *fakeNetworks) Get(ref string) (network.Network, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(ref)
	if err != nil {
		return network.Network{}, err
	}
	return f.nets[i], nil
}

func (f *fakeNetworks) List() []network.Network {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.nets)
}

func (f *fakeNetworks) NetworkEndpoints(id string) []network.NetworkEndpoint {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []network.NetworkEndpoint
	for _, c := range f.attached[id] {
		out = append(out, network.NetworkEndpoint{ContainerID: c, Name: "web", Endpoint: network.Endpoint{
			EndpointID: "ep", MAC: "02:42:ac:11:00:02", IPv4: netip.MustParsePrefix("10.9.0.2/24")}})
	}
	return out
}

func (f *fakeNetworks) Remove(ctx context.Context, ref string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(ref)
	if err != nil {
		return err
	}
	n := f.nets[i]
	if n.Predefined() {
		return fmt.Errorf("%w: %s is a pre-defined network and cannot be removed", errdefs.ErrPermissionDenied, n.Name)
	}
	if len(f.attached[n.ID]) > 0 {
		return fmt.Errorf("%w: error while removing network: network %s id %s has active endpoints", errdefs.ErrPermissionDenied, n.Name, n.ID)
	}
	f.nets = slices.Delete(f.nets, i, i+1)
	return nil
}

func (f *fakeNetworks) Prune(ctx context.Context, keep func(network.Network) bool) ([]string, error) {
	var out []string
	for _, n := range f.List() {
		if n.Predefined() || keep(n) {
			continue
		}
		if f.Remove(ctx, n.ID) == nil {
			out = append(out, n.Name)
		}
	}
	return out, nil
}

func (f *fakeNetworks) Connect(ctx context.Context, id, ref string, cfg network.EndpointConfig) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(ref)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, fmt.Sprintf("connect %s %s %v %s", id[:6], f.nets[i].Name, cfg.Aliases, cfg.IPv4Address))
	f.attached[f.nets[i].ID] = append(f.attached[f.nets[i].ID], id)
	return nil
}

func (f *fakeNetworks) Disconnect(ctx context.Context, id, ref string, force bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.find(ref)
	if err != nil {
		return err
	}
	f.calls = append(f.calls, fmt.Sprintf("disconnect %s %s %v", id[:6], f.nets[i].Name, force))
	f.attached[f.nets[i].ID] = nil
	return nil
}

func (f *fakeNetworks) ResolveContainer(ref string) (string, error) {
	if id, ok := f.ctrs[ref]; ok {
		return id, nil
	}
	return "", fmt.Errorf("%w: No such container: %s", errdefs.ErrNotFound, ref)
}

func TestNetworkEndpoints(t *testing.T) {
	f := newFakeNetworks()
	srv := httptest.NewServer(NewHandler(dockerapitest.New(), Options{Version: "0.0.1-test", Networks: f}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()

	created, err := c.NetworkCreate(ctx, "app", client.NetworkCreateOptions{
		Labels: map[string]string{"tier": "front"},
		IPAM:   &dnet.IPAM{Config: []dnet.IPAMConfig{{Subnet: netip.MustParsePrefix("10.9.0.0/24"), Gateway: netip.MustParseAddr("10.9.0.1")}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkCreate(ctx, "app", client.NetworkCreateOptions{}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("duplicate create: %v", err)
	}
	if _, err := c.NetworkCreate(ctx, "x", client.NetworkCreateOptions{Scope: "swarm"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("swarm scope: %v", err)
	}

	ins, err := c.NetworkInspect(ctx, "app", client.NetworkInspectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ins.Network.ID != created.ID || ins.Network.Scope != "local" || ins.Network.Labels["tier"] != "front" || len(ins.Network.IPAM.Config) != 1 || ins.Network.IPAM.Config[0].Gateway.String() != "10.9.0.1" {
		t.Errorf("inspect %+v", ins.Network)
	}
	if _, err := c.NetworkInspect(ctx, "nope", client.NetworkInspectOptions{}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "network nope not found") {
		t.Errorf("inspect unknown: %v", err)
	}

	// Connect by container name, with an alias and an address.
	if _, err := c.NetworkConnect(ctx, "app", client.NetworkConnectOptions{Container: "web", EndpointConfig: &dnet.EndpointSettings{
		Aliases: []string{"www"}, IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("10.9.0.9")},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkConnect(ctx, "app", client.NetworkConnectOptions{Container: "ghost"}); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), "No such container: ghost") {
		t.Errorf("connect unknown container: %v", err)
	}
	if want := "connect c0ffee app [www] 10.9.0.9"; !slices.Contains(f.calls, want) {
		t.Errorf("calls %v, want %q", f.calls, want)
	}
	ins, _ = c.NetworkInspect(ctx, created.ID[:12], client.NetworkInspectOptions{})
	if ep, ok := ins.Network.Containers[f.ctrs["web"]]; !ok || ep.Name != "web" || ep.IPv4Address.String() != "10.9.0.2/24" || ep.MacAddress.String() != "02:42:ac:11:00:02" {
		t.Errorf("inspect containers %+v", ins.Network.Containers)
	}
	if _, err := c.NetworkRemove(ctx, "app", client.NetworkRemoveOptions{}); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "has active endpoints") {
		t.Errorf("remove in use: %v", err)
	}
	if _, err := c.NetworkRemove(ctx, "bridge", client.NetworkRemoveOptions{}); !errdefs.IsPermissionDenied(err) {
		t.Errorf("remove bridge: %v", err)
	}

	// Filters.
	list := func(f client.Filters) []string {
		t.Helper()
		res, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: f})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, n := range res.Items {
			names = append(names, n.Name)
		}
		slices.Sort(names)
		return names
	}
	for _, tc := range []struct {
		f    client.Filters
		want []string
	}{
		{client.Filters{}, []string{"app", "bridge", "host", "none"}},
		{make(client.Filters).Add("name", "ap"), []string{"app"}},
		{make(client.Filters).Add("name", "^b"), []string{"bridge"}},
		{make(client.Filters).Add("id", created.ID[:8]), []string{"app"}},
		{make(client.Filters).Add("driver", "null"), []string{"none"}},
		{make(client.Filters).Add("label", "tier"), []string{"app"}},
		{make(client.Filters).Add("label", "tier=back"), nil},
		{make(client.Filters).Add("type", "builtin"), []string{"bridge", "host", "none"}},
		{make(client.Filters).Add("type", "custom"), []string{"app"}},
		{make(client.Filters).Add("dangling", "true"), nil},
		{make(client.Filters).Add("dangling", "false"), []string{"app", "bridge", "host", "none"}},
	} {
		if got := list(tc.f); !slices.Equal(got, tc.want) {
			t.Errorf("filters %v: %v, want %v", tc.f, got, tc.want)
		}
	}
	if _, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("bogus", "1")}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown filter: %v", err)
	}
	if _, err := c.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("dangling", "maybe")}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad dangling: %v", err)
	}

	// Disconnect, then prune takes only the unused custom network.
	if _, err := c.NetworkDisconnect(ctx, "app", client.NetworkDisconnectOptions{Container: "web", Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.NetworkCreate(ctx, "keepme", client.NetworkCreateOptions{Labels: map[string]string{"keep": "1"}}); err != nil {
		t.Fatal(err)
	}
	res, err := c.NetworkPrune(ctx, client.NetworkPruneOptions{Filters: make(client.Filters).Add("label!", "keep")})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Report.NetworksDeleted, []string{"app"}) {
		t.Errorf("pruned %v, want [app]", res.Report.NetworksDeleted)
	}
	if got := list(client.Filters{}); !slices.Equal(got, []string{"bridge", "host", "keepme", "none"}) {
		t.Errorf("after prune: %v", got)
	}

	// Bad bodies and the remaining status codes.
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{"POST", "/networks/create", `{"Name":`, http.StatusBadRequest},
		{"POST", "/networks/create", `{"Name":"x","IPAM":{"Config":[{"Subnet":"not-a-subnet"}]}}`, http.StatusBadRequest},
		{"POST", "/networks/create", `{}`, http.StatusBadRequest},
		{"POST", "/networks/keepme/connect", `{}`, http.StatusBadRequest},
		{"DELETE", "/v1.41/networks/keepme", ``, http.StatusNoContent},
		{"DELETE", "/networks/keepme", ``, http.StatusNotFound},
	} {
		resp, body := do(t, srv, tc.method, tc.path, strings.NewReader(tc.body), "Content-Type", "application/json")
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s %s: %d %s, want %d", tc.method, tc.path, tc.body, resp.StatusCode, body, tc.status)
		}
	}
}
