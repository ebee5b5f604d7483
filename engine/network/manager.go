package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/engine/network/resolver"
	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/logctx"
)

// Manager owns the engine's networks and the containers' endpoints. It is
// safe for concurrent use; calls for one container are serialised.
type Manager struct {
	cfg Config
	cni *cni.Manager
	dns *resolver.Server
	log *slog.Logger

	// netOp serialises network creation, removal and the lazy set-up of
	// the default bridge.
	netOp sync.Mutex

	// mu guards the maps and the records they hold (but not a container's
	// record while its op lock is held by an attach in progress: see
	// ctrState).
	mu         sync.Mutex
	networks   map[string]*Network
	removing   map[string]bool
	containers map[string]*ctrState
	// busy counts endpoints being attached per network, so that Remove
	// does not take a network from under an ADD.
	busy map[string]int
	// defaultUp is the default network's bridge once this manager set it
	// up (ensureDefault).
	defaultUp string
}

// ctrState is one registered container.
type ctrState struct {
	// op serialises the container's Attach, Detach, Connect, Disconnect.
	op sync.Mutex
	// rec is read under Manager.mu, written under op and Manager.mu.
	rec  containerRecord
	held []*reservation
}

// containerRecord is what survives a restart of berthd.
type containerRecord struct {
	Container Container
	// NetNS is the namespace while attached.
	NetNS          string `json:",omitempty"`
	HostsPath      string `json:",omitempty"`
	ResolvConfPath string `json:",omitempty"`
	Endpoints      []endpointRecord
	Ports          []PortMapping `json:",omitempty"`
}

// endpointRecord is one configured network of a container; the fields
// after Config are set while attached.
type endpointRecord struct {
	NetworkID   string
	Config      EndpointConfig
	EndpointID  string       `json:",omitempty"`
	IfName      string       `json:",omitempty"`
	MAC         string       `json:",omitempty"`
	IPv4        netip.Prefix `json:",omitzero"`
	IPv6        netip.Prefix `json:",omitzero"`
	Gateway     netip.Addr   `json:",omitzero"`
	IPv6Gateway netip.Addr   `json:",omitzero"`
	// Primary: this endpoint carries the default route and the ports.
	Primary bool `json:",omitempty"`
}

// networkRecord is a network on disk.
type networkRecord struct {
	Network Network
	// Removing is set before a removal starts, so that start-up finishes
	// one a crash interrupted.
	Removing bool `json:",omitempty"`
}

// Open loads the records under cfg.Root, makes the predefined networks
// (bridge, host, none) if they are not recorded yet, and reconciles the
// records with the host: bridges, isolation rules and DNS listeners of
// user-defined networks are put back, removals a crash interrupted are
// finished, attachments whose namespace is gone are detached, and leases
// and CNI cache entries that no attachment owns are freed. Containers the
// engine no longer knows are released by GC, once the engine has loaded
// its own records.
func Open(ctx context.Context, cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.Root, cfg.confDir(), cfg.ipamDir(), cfg.netDir(), cfg.ctrDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("open networks: %w", err)
		}
	}
	cm, err := cni.New(cni.Config{
		ConfDir:    cfg.confDir(),
		BinDirs:    cfg.BinDirs,
		CacheDir:   cfg.cacheDir(),
		NetNSDir:   cfg.NetNSDir,
		LoopbackUp: true,
	})
	if err != nil {
		return nil, fmt.Errorf("open networks: %w", err)
	}
	log := logctx.From(ctx)
	m := &Manager{
		cfg:        cfg,
		cni:        cm,
		log:        log,
		dns:        resolver.New(dnsConfig(cfg, log)),
		networks:   map[string]*Network{},
		removing:   map[string]bool{},
		containers: map[string]*ctrState{},
		busy:       map[string]int{},
	}
	if err := m.load(); err != nil {
		return nil, err
	}
	if err := m.predefine(); err != nil {
		return nil, err
	}
	m.reconcile(ctx)
	return m, nil
}

// dnsConfig is the responder's config: cfg's, with the manager's host
// resolv.conf and logger.
func dnsConfig(cfg Config, log *slog.Logger) resolver.Config {
	rc := cfg.Resolver
	rc.ResolvConf, rc.Logger = cfg.ResolvConf, log
	return rc
}

// Close stops the DNS listeners. Bridges, rules and attachments stay: the
// containers outlive berthd.
func (m *Manager) Close() {
	m.dns.Close()
}

// Resolver is the DNS responder (for tests and metrics).
func (m *Manager) Resolver() *resolver.Server { return m.dns }

func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b[:])
}

func (m *Manager) load() error {
	ents, err := os.ReadDir(m.cfg.netDir())
	if err != nil {
		return fmt.Errorf("load networks: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var r networkRecord
		if err := readJSON(filepath.Join(m.cfg.netDir(), e.Name()), &r); err != nil {
			m.log.Warn("skip unreadable network record", "file", e.Name(), "error", err)
			continue
		}
		n := r.Network
		m.networks[n.ID] = &n
		if r.Removing {
			m.removing[n.ID] = true
		}
	}
	ents, err = os.ReadDir(m.cfg.ctrDir())
	if err != nil {
		return fmt.Errorf("load container endpoints: %w", err)
	}
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var r containerRecord
		if err := readJSON(filepath.Join(m.cfg.ctrDir(), e.Name()), &r); err != nil {
			m.log.Warn("skip unreadable container network record", "file", e.Name(), "error", err)
			continue
		}
		m.containers[r.Container.ID] = &ctrState{rec: r}
	}
	return nil
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func (m *Manager) saveNetwork(n *Network, removing bool) error {
	return atomicfile.WriteJSON(filepath.Join(m.cfg.netDir(), n.ID+".json"), networkRecord{Network: *n, Removing: removing}, 0o600)
}

func (m *Manager) saveContainer(c *ctrState) error {
	return atomicfile.WriteJSON(filepath.Join(m.cfg.ctrDir(), c.rec.Container.ID+".json"), c.rec, 0o600)
}

// predefine records bridge, host and none on first start.
func (m *Manager) predefine() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	have := map[string]*Network{}
	for _, n := range m.networks {
		if n.Predefined() {
			have[n.Name] = n
		}
	}
	now := time.Now().UTC()
	for _, p := range []struct{ name, driver string }{{NameBridge, DriverBridge}, {NameHost, DriverHost}, {NameNone, DriverNull}} {
		if n := have[p.name]; n != nil {
			if p.name == NameBridge && n.Bridge != m.cfg.DefaultBridge {
				// The config names another bridge now; the old one goes
				// when nothing uses it (reconcile).
				m.log.Info("default bridge renamed by config", "old", n.Bridge, "new", m.cfg.DefaultBridge)
			}
			continue
		}
		n := &Network{ID: newID(), Name: p.name, Driver: p.driver, Created: now, IPAM: IPAM{Driver: "default"}, Options: map[string]string{}, Labels: map[string]string{}}
		if p.name == NameBridge {
			if err := m.defaultBridge(n); err != nil {
				return err
			}
		}
		if err := m.saveNetwork(n, false); err != nil {
			return fmt.Errorf("record network %s: %w", p.name, err)
		}
		m.networks[n.ID] = n
	}
	return nil
}

// defaultBridge fills the default network from the config: its bridge,
// and its subnet (the configured one, or the first free one of the pools).
func (m *Manager) defaultBridge(n *Network) error {
	n.Bridge = m.cfg.DefaultBridge
	n.Options = map[string]string{
		OptDefaultBridge:   "true",
		OptICC:             "true",
		OptMasquerade:      "true",
		OptHostBindingIPv4: "0.0.0.0",
		OptBridgeName:      n.Bridge,
		OptMTU:             fmt.Sprint(m.cfg.MTU),
	}
	if err := bridgeOptions(n, n.Options, m.cfg.MTU); err != nil {
		return err
	}
	subnet := m.cfg.DefaultSubnet
	if subnet.IsValid() {
		if err := m.checkFree(subnet, ""); err != nil {
			return fmt.Errorf("default network subnet %s: %w", subnet, err)
		}
	} else {
		var err error
		if subnet, err = m.pickSubnet(); err != nil {
			return fmt.Errorf("default network: %w", err)
		}
	}
	gw := m.cfg.DefaultGateway
	if !gw.IsValid() {
		gw = subnet.Addr().Next()
	}
	n.IPAM.Config = []IPAMConfig{{Subnet: subnet, Gateway: gw}}
	return nil
}

// checkFree fails when subnet overlaps another network of ours (but
// except) or a route of the host.
func (m *Manager) checkFree(subnet netip.Prefix, except string) error {
	ours := map[string]bool{}
	for _, n := range m.networks {
		if n.Bridge != "" {
			ours[n.Bridge] = true
		}
		if n.ID == except {
			continue
		}
		for _, s := range n.subnets() {
			if overlaps(s, subnet) {
				return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("Pool overlaps with other one on this address space: %s overlaps %s of network %s", subnet, s, n.Name))
			}
		}
	}
	routes, err := hostRoutes(ours)
	if err != nil {
		return err
	}
	for _, r := range routes {
		if overlaps(r, subnet) {
			return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("Pool overlaps with other one on this address space: %s overlaps the host's route to %s", subnet, r))
		}
	}
	return nil
}

// pickSubnet returns the first subnet of the pools that no network of ours
// and no route of the host covers (m.mu held).
func (m *Manager) pickSubnet() (netip.Prefix, error) {
	ours := map[string]bool{}
	var taken []netip.Prefix
	for _, n := range m.networks {
		if n.Bridge != "" {
			ours[n.Bridge] = true
		}
		taken = append(taken, n.subnets()...)
	}
	routes, err := hostRoutes(ours)
	if err != nil {
		return netip.Prefix{}, err
	}
	taken = append(taken, routes...)
	for _, pool := range m.cfg.AddressPools {
		step := 1 << (pool.Base.Addr().BitLen() - pool.Size)
		if pool.Base.Addr().Is6() && pool.Base.Addr().BitLen()-pool.Size >= 63 {
			continue // IPv6 pools: not walked
		}
		base := pool.Base.Masked().Addr()
		count := 1 << (pool.Size - pool.Base.Bits())
		for i := 0; i < count; i++ {
			cand := netip.PrefixFrom(addOffset(base, uint64(i)*uint64(step)), pool.Size)
			if !slices.ContainsFunc(taken, func(t netip.Prefix) bool { return overlaps(t, cand) }) {
				return cand, nil
			}
		}
	}
	return netip.Prefix{}, errdefs.ErrUnavailable.WithMessage("could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network")
}

func addOffset(a netip.Addr, off uint64) netip.Addr {
	b := a.As16()
	carry := off
	for i := 15; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + carry&0xff
		b[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	out := netip.AddrFrom16(b)
	if a.Is4() {
		out = out.Unmap()
	}
	return out
}

// find returns the network with this ID, name, or unique ID prefix, as
// Docker resolves it (m.mu held).
func (m *Manager) find(idOrName string) (*Network, error) {
	if idOrName == "" {
		return nil, errdefs.ErrInvalidArgument.WithMessage("network name or ID is empty")
	}
	if n := m.networks[idOrName]; n != nil && !m.removing[n.ID] {
		return n, nil
	}
	for _, n := range m.networks {
		if n.Name == idOrName && !m.removing[n.ID] {
			return n, nil
		}
	}
	var match []*Network
	for _, n := range m.networks {
		if strings.HasPrefix(n.ID, idOrName) && !m.removing[n.ID] {
			match = append(match, n)
		}
	}
	switch len(match) {
	case 1:
		return match[0], nil
	case 0:
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", idOrName))
	}
	return nil, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("network %s is ambiguous (%d matches found based on ID prefix)", idOrName, len(match)))
}

// Get returns a network by ID, name or unique ID prefix.
func (m *Manager) Get(idOrName string) (Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, err := m.find(idOrName)
	if err != nil {
		return Network{}, err
	}
	return n.clone(), nil
}

// List returns every network, sorted by name.
func (m *Manager) List() []Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Network, 0, len(m.networks))
	for _, n := range m.networks {
		if !m.removing[n.ID] {
			out = append(out, n.clone())
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// NetworkEndpoint is one container attached to a network.
type NetworkEndpoint struct {
	ContainerID string
	Name        string
	Endpoint    Endpoint
}

// NetworkEndpoints returns the attached endpoints of a network (docker
// network inspect's Containers): running containers only, as Docker.
func (m *Manager) NetworkEndpoints(id string) []NetworkEndpoint {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []NetworkEndpoint
	for _, c := range m.containers {
		for _, e := range c.rec.Endpoints {
			if e.NetworkID == id && (e.EndpointID != "" || c.rec.NetNS != "" && m.noCNI(id)) {
				out = append(out, NetworkEndpoint{ContainerID: c.rec.Container.ID, Name: c.rec.Container.Name, Endpoint: m.endpoint(c, e)})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// noCNI reports whether a network has no CNI attachment (host, none).
func (m *Manager) noCNI(id string) bool {
	n := m.networks[id]
	return n != nil && n.Driver != DriverBridge
}

// inUse reports whether a network has attached endpoints or attaches in
// flight (m.mu held).
func (m *Manager) inUse(id string) (string, bool) {
	if m.busy[id] > 0 {
		return "", true
	}
	for _, c := range m.containers {
		for _, e := range c.rec.Endpoints {
			if e.NetworkID == id && e.EndpointID != "" {
				return c.rec.Container.Name, true
			}
		}
	}
	return "", false
}

// event emits a network event as Docker does: the network's ID as the
// actor, its name and type, and the container for connect and disconnect.
func (m *Manager) event(action events.Action, n *Network, container string) {
	if m.cfg.Events == nil || n == nil {
		return
	}
	attrs := map[string]string{"name": n.Name, "type": n.Driver}
	if container != "" {
		attrs["container"] = container
	}
	m.cfg.Events.Log(events.NetworkEventType, action, n.ID, attrs)
}

// errJoin joins errors into one, nil when there are none.
func errJoin(errs []error) error { return errors.Join(errs...) }
