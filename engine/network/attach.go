package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/internal/steps"
)

// cleanupTimeout bounds the DELs that undo a failed attach.
const cleanupTimeout = time.Minute

// Register records a container's network configuration at create: its
// mode, the networks it joins with their endpoint settings, its ports,
// DNS settings and extra hosts. Nothing is attached yet. Bad input (an
// unknown network, an address outside the subnet, aliases on the default
// bridge, ...) is refused here, as Docker refuses it at create.
// Registering an ID again replaces its configuration (the container must
// not be attached).
func (m *Manager) Register(ctx context.Context, c Container) error {
	if err := checkContainerID(c.ID); err != nil {
		return err
	}
	for _, h := range c.ExtraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return err
		}
	}
	if _, _, err := wantedPorts(&c); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if old := m.containers[c.ID]; old != nil && old.rec.NetNS != "" {
		return errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("container %s is attached; detach it before registering it again", shortID(c.ID)))
	}
	eps, err := m.plan(&c)
	if err != nil {
		return err
	}
	st := &ctrState{rec: containerRecord{Container: c, Endpoints: eps}}
	if err := m.saveContainer(st); err != nil {
		return fmt.Errorf("register container %s: %w", shortID(c.ID), err)
	}
	m.containers[c.ID] = st
	return nil
}

func checkContainerID(id string) error {
	if id == "" || strings.ContainsAny(id, "/;= \t\n") || id == "." || id == ".." {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid container ID %q", id))
	}
	return nil
}

// plan resolves a container's mode and networks to endpoint records, in
// Docker's order: the mode's network first, then the others by name
// (m.mu held).
func (m *Manager) plan(c *Container) ([]endpointRecord, error) {
	mode := c.Mode
	if isContainerMode(mode) {
		if len(c.Networks) > 0 || len(c.PortBindings) > 0 || c.PublishAll {
			return nil, errdefs.ErrInvalidArgument.WithMessage("conflicting options: a container sharing another container's network namespace can have no networks or published ports")
		}
		return nil, nil
	}
	first := modeNetwork(mode)
	type want struct {
		n   *Network
		cfg EndpointConfig
	}
	var wants []want
	seen := map[string]bool{}
	fn, err := m.find(first)
	if err != nil {
		return nil, err
	}
	firstCfg, ok := c.Networks[first]
	if !ok {
		// Keyed by ID or another spelling of the same network?
		for k, v := range c.Networks {
			if n, err := m.find(modeNetwork(k)); err == nil && n.ID == fn.ID {
				firstCfg = v
			}
		}
	}
	wants = append(wants, want{fn, firstCfg})
	seen[fn.ID] = true
	keys := make([]string, 0, len(c.Networks))
	for k := range c.Networks {
		keys = append(keys, k)
	}
	var rest []want
	for _, k := range keys {
		n, err := m.find(modeNetwork(k))
		if err != nil {
			return nil, err
		}
		if seen[n.ID] {
			continue
		}
		seen[n.ID] = true
		rest = append(rest, want{n, c.Networks[k]})
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i].n.Name < rest[j].n.Name })
	wants = append(wants, rest...)

	var out []endpointRecord
	for _, w := range wants {
		if err := m.checkEndpoint(c, w.n, w.cfg, len(wants)); err != nil {
			return nil, err
		}
		out = append(out, endpointRecord{NetworkID: w.n.ID, Config: cloneEndpointConfig(w.cfg)})
	}
	return out, nil
}

func cloneEndpointConfig(c EndpointConfig) EndpointConfig {
	c.Aliases = slices.Clone(c.Aliases)
	c.Links = slices.Clone(c.Links)
	if c.DriverOpts != nil {
		opts := make(map[string]string, len(c.DriverOpts))
		for k, v := range c.DriverOpts {
			opts[k] = v
		}
		c.DriverOpts = opts
	}
	return c
}

// checkEndpoint refuses what Docker refuses for one endpoint; total is
// the number of the container's networks.
func (m *Manager) checkEndpoint(c *Container, n *Network, cfg EndpointConfig, total int) error {
	bad := func(format string, args ...any) error {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
	}
	switch n.Driver {
	case DriverHost, DriverNull:
		if total > 1 {
			if n.Driver == DriverHost {
				return bad("container cannot be disconnected from host network or connected to host network")
			}
			return bad("container cannot be connected to multiple networks with one of the networks in private (none) mode")
		}
		if n.Driver == DriverHost && (len(c.PortBindings) > 0) {
			// Docker ignores -p with --network host, with a warning.
			c.PortBindings = nil
			c.PublishAll = false
		}
		if len(cfg.Aliases) > 0 || cfg.IPv4Address.IsValid() || cfg.IPv6Address.IsValid() || cfg.MacAddress != "" {
			return bad("network-scoped aliases, addresses and MAC addresses are not supported on the %s network", n.Name)
		}
		return nil
	}
	if !n.Names() {
		if len(cfg.Aliases) > 0 {
			return bad("network-scoped alias is supported only for containers in user defined networks")
		}
		if cfg.IPv4Address.IsValid() || cfg.IPv6Address.IsValid() {
			return bad("user specified IP address is supported on user defined networks only")
		}
	}
	for _, a := range []netip.Addr{cfg.IPv4Address, cfg.IPv6Address} {
		if !a.IsValid() {
			continue
		}
		var sub IPAMConfig
		var ok bool
		if a.Is4() {
			sub, ok = n.subnet4()
		} else {
			sub, ok = n.subnet6()
		}
		if !ok || !sub.Subnet.Contains(a) {
			return bad("invalid config for network %s: invalid endpoint settings: no configured subnet contains IP address %s", n.Name, a)
		}
		if a == sub.Gateway || a == sub.Subnet.Masked().Addr() || (a.Is4() && a == lastAddr(sub.Subnet)) {
			return bad("invalid config for network %s: invalid endpoint settings: %s is the subnet's gateway, network or broadcast address", n.Name, a)
		}
		if sub.IPRange.IsValid() && !sub.IPRange.Contains(a) {
			// host-local hands out addresses of the range only.
			return bad("invalid config for network %s: invalid endpoint settings: IP address %s is outside the network's ip-range %s", n.Name, a, sub.IPRange)
		}
	}
	if cfg.MacAddress != "" {
		if _, err := net.ParseMAC(cfg.MacAddress); err != nil {
			return bad("invalid MAC address %q", cfg.MacAddress)
		}
	}
	for _, al := range cfg.Aliases {
		if canonicalName(al) == "" {
			return bad("invalid alias %q: not a DNS name", al)
		}
	}
	return nil
}

func canonicalName(n string) string {
	n = strings.ToLower(strings.TrimSuffix(n, "."))
	if n == "" || len(n) > 253 {
		return ""
	}
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return ""
		}
	}
	return n
}

// AttachRequest is what the engine passes at container start.
type AttachRequest struct {
	// ID is the registered container.
	ID string
	// NetNS is the container's pinned network namespace (the sandbox's
	// NetNSPath); empty for host mode.
	NetNS string
	// HostsPath and ResolvConfPath are the container's /etc/hosts and
	// /etc/resolv.conf (the sandbox's files, bind-mounted into it). The
	// manager writes them after attaching and again on every connect and
	// disconnect, in place. Empty leaves a file alone.
	HostsPath      string
	ResolvConfPath string
}

// Attach connects a registered container's namespace to its networks at
// start: one CNI ADD per network (eth0, eth1, ... in the registered
// order), ports published on the first (gateway) endpoint, /etc/hosts and
// /etc/resolv.conf written, its names served by DNS. On error nothing
// stays attached. Call it once the sandbox exists (after the runtime's
// CreateSandbox returned), not from the runtime's SandboxNetwork hook:
// the runtime writes the same files while the hook runs.
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (Settings, error) {
	c, err := m.container(req.ID)
	if err != nil {
		return Settings{}, err
	}
	st := steps.Start(ctx, "attach network")
	defer st.Log("id", req.ID)
	c.op.Lock()
	defer c.op.Unlock()
	st.Done("wait")
	m.mu.Lock()
	attached := c.rec.NetNS != ""
	m.mu.Unlock()
	if attached {
		return Settings{}, errdefs.ErrFailedPrecondition.WithMessage(fmt.Sprintf("container %s is already attached", shortID(req.ID)))
	}
	mode := c.rec.Container.Mode
	if isContainerMode(mode) {
		return Settings{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("container %s shares another container's network namespace: nothing to attach", shortID(req.ID)))
	}
	m.mu.Lock()
	needNS := slices.ContainsFunc(c.rec.Endpoints, func(e endpointRecord) bool {
		n := m.networks[e.NetworkID]
		return n == nil || n.Driver == DriverBridge
	})
	m.mu.Unlock()
	netns := req.NetNS
	if needNS {
		if err := m.checkNetNS(netns); err != nil {
			return Settings{}, err
		}
	} else if netns == "" {
		// host or none without a namespace path: a marker, so that the
		// container still reads as attached.
		netns = noNetNS
	}
	m.mu.Lock()
	c.rec.HostsPath, c.rec.ResolvConfPath = req.HostsPath, req.ResolvConfPath
	c.rec.NetNS = netns
	n := len(c.rec.Endpoints)
	m.mu.Unlock()

	var done []int
	undo := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		for i := len(done) - 1; i >= 0; i-- {
			if err := m.detachEndpoint(cctx, c, done[i], netns, nil); err != nil {
				m.log.Warn("undo attach", "container", req.ID, "error", err)
			}
		}
		m.mu.Lock()
		for _, r := range c.held {
			r.close()
		}
		c.held = nil
		c.rec.Ports = nil
		c.rec.NetNS = ""
		m.refreshDNS()
		m.mu.Unlock()
	}
	gw := m.gatewayEndpoint(c)
	for i := 0; i < n; i++ {
		if err := m.attachEndpoint(ctx, c, i, i == gw, st); err != nil {
			undo()
			return Settings{}, fmt.Errorf("start container %s: %w", shortID(req.ID), err)
		}
		done = append(done, i)
	}
	m.mu.Lock()
	err = m.writeFiles(c)
	st.Done("files")
	if err == nil {
		err = m.saveContainer(c)
		st.Done("save")
	}
	if err != nil {
		m.mu.Unlock()
		undo()
		return Settings{}, fmt.Errorf("start container %s: %w", shortID(req.ID), err)
	}
	defer m.mu.Unlock()
	m.refreshDNS()
	st.Done("dns")
	return m.settings(c), nil
}

// noNetNS marks a container attached to host or none without a namespace
// path of its own.
const noNetNS = "-"

// checkNetNS refuses an empty or missing namespace path early, with a
// clear message; the cni package checks the rest (under NetNSDir, not the
// host's).
func (m *Manager) checkNetNS(p string) error {
	if p == "" {
		return errdefs.ErrInvalidArgument.WithMessage("no network namespace to attach")
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("network namespace %s: %w", p, errors.Join(errdefs.ErrNotFound, err))
	}
	return nil
}

// gatewayEndpoint picks the endpoint that gets the default route and the
// published ports, as Docker does: the highest GwPriority among those on
// networks that are not internal, the first of them on a tie; -1 when
// there is none.
func (m *Manager) gatewayEndpoint(c *ctrState) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	best := -1
	for i, e := range c.rec.Endpoints {
		n := m.networks[e.NetworkID]
		if n == nil || n.Driver != DriverBridge || n.Internal {
			continue
		}
		if best < 0 || e.Config.GwPriority > c.rec.Endpoints[best].Config.GwPriority {
			best = i
		}
	}
	return best
}

// attachEndpoint runs the ADD of endpoint i (c.op held). gateway says it
// carries the default route and the published ports (Docker's gateway
// endpoint); it is ignored on an internal network.
func (m *Manager) attachEndpoint(ctx context.Context, c *ctrState, i int, gateway bool, st *steps.Timer) error {
	m.mu.Lock()
	e := c.rec.Endpoints[i]
	n := m.networks[e.NetworkID]
	if n == nil || m.removing[e.NetworkID] {
		m.mu.Unlock()
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("network %s not found", e.NetworkID))
	}
	if n.Driver != DriverBridge {
		// host and none: nothing to plumb; the endpoint exists for inspect.
		c.rec.Endpoints[i].EndpointID = newID()
		nn := n.clone()
		m.mu.Unlock()
		m.event(events.ActionConnect, &nn, c.rec.Container.ID)
		return nil
	}
	// An address asked for is free unless another attached endpoint holds
	// it: say so in Docker's words before host-local says it in its own.
	for _, a := range []netip.Addr{e.Config.IPv4Address, e.Config.IPv6Address} {
		if !a.IsValid() {
			continue
		}
		for _, o := range m.containers {
			for _, oe := range o.rec.Endpoints {
				if oe.NetworkID == n.ID && oe.EndpointID != "" && (oe.IPv4.Addr() == a || oe.IPv6.Addr() == a) {
					m.mu.Unlock()
					return errdefs.ErrConflict.WithMessage(fmt.Sprintf("Address already in use: %s is held by container %s on network %s", a, o.rec.Container.Name, n.Name))
				}
			}
		}
	}
	m.busy[n.ID]++
	nn := n.clone()
	ifName := m.nextIfName(c)
	netns := c.rec.NetNS
	ctr := c.rec.Container
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.busy[n.ID]--
		m.mu.Unlock()
	}()

	if nn.Name == NameBridge {
		if err := m.ensureDefault(); err != nil {
			return err
		}
		m.mu.Lock()
		nn = m.networks[n.ID].clone()
		m.mu.Unlock()
	}
	gateway = gateway && !nn.Internal
	var ports []PortMapping
	var held []*reservation
	if gateway {
		var err error
		ports, held, err = m.allocate(&ctr, nn.HostBindingIPv4)
		if err != nil {
			return err
		}
	}
	release := func() {
		for _, r := range held {
			r.close()
		}
	}
	conf, err := m.conflist(&nn, variant{gateway: gateway})
	if err != nil {
		release()
		return err
	}
	req := cni.NetworkRequest{ID: ctr.ID, NetNS: netns, IfName: ifName, Config: conf, MAC: e.Config.MacAddress}
	for _, a := range []netip.Addr{e.Config.IPv4Address, e.Config.IPv6Address} {
		if a.IsValid() {
			req.IPs = append(req.IPs, a)
		}
	}
	res, err := m.cni.AttachNetwork(ctx, req)
	st.Done("cni-add")
	if err != nil {
		release()
		return fmt.Errorf("attach to network %s: %w", nn.Name, err)
	}
	var got endpointRecord
	for _, ip := range res.IPs {
		if ip.Address.Addr().Is4() && !got.IPv4.IsValid() {
			got.IPv4, got.Gateway = ip.Address, ip.Gateway
		} else if ip.Address.Addr().Is6() && !got.IPv6.IsValid() {
			got.IPv6, got.IPv6Gateway = ip.Address, ip.Gateway
		}
	}
	if len(ports) > 0 {
		err := m.publish(&nn, ctr.ID, ports, got.IPv4, got.IPv6)
		st.Done("ports")
		if err != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
			defer cancel()
			if derr := m.cni.DetachNetwork(cctx, req); derr != nil {
				m.log.Warn("undo attach", "container", ctr.ID, "network", nn.Name, "error", derr)
			}
			release()
			return fmt.Errorf("attach to network %s: %w", nn.Name, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	ep := &c.rec.Endpoints[i]
	ep.EndpointID = newID()
	ep.IfName = ifName
	ep.MAC = res.MAC
	ep.Primary = gateway
	ep.IPv4, ep.IPv6 = got.IPv4, got.IPv6
	if gateway {
		ep.Gateway, ep.IPv6Gateway = got.Gateway, got.IPv6Gateway
	}
	if len(ports) > 0 {
		c.rec.Ports = append(c.rec.Ports, ports...)
		c.held = append(c.held, held...)
	}
	m.event(events.ActionConnect, &nn, ctr.ID)
	return nil
}

// nextIfName is the lowest ethN not used by an attached endpoint (m.mu
// held).
func (m *Manager) nextIfName(c *ctrState) string {
	for i := 0; ; i++ {
		name := "eth" + strconv.Itoa(i)
		if !slices.ContainsFunc(c.rec.Endpoints, func(e endpointRecord) bool { return e.EndpointID != "" && e.IfName == name }) {
			return name
		}
	}
}

// detachEndpoint runs the DEL of endpoint i and clears its operational
// fields (c.op held). It returns the DEL's error; the fields are cleared
// only when it succeeded.
func (m *Manager) detachEndpoint(ctx context.Context, c *ctrState, i int, netns string, st *steps.Timer) error {
	m.mu.Lock()
	e := c.rec.Endpoints[i]
	var n *Network
	if o := m.networks[e.NetworkID]; o != nil {
		cl := o.clone()
		n = &cl
	}
	id := c.rec.Container.ID
	m.mu.Unlock()
	if e.EndpointID == "" {
		return nil
	}
	if n != nil && n.Driver == DriverBridge && e.IfName != "" {
		nn := n.clone()
		var ports []PortMapping
		if e.Primary {
			m.mu.Lock()
			ports = slices.Clone(c.rec.Ports)
			m.mu.Unlock()
		}
		if len(ports) > 0 {
			err := m.unpublish(nn.ID, id, ports, e.IPv4, e.IPv6)
			st.Done("ports")
			if err != nil {
				return fmt.Errorf("detach from network %s: %w", nn.Name, err)
			}
		}
		// Only used without a cache entry: DEL takes the config cached at
		// ADD (with portmap, for an attachment made before Berth published
		// ports itself).
		conf, err := m.conflist(&nn, variant{gateway: e.Primary})
		if err != nil {
			return err
		}
		if netns == noNetNS {
			netns = ""
		}
		req := cni.NetworkRequest{ID: id, NetNS: netns, IfName: e.IfName, Config: conf}
		err = m.cni.DetachNetwork(ctx, req)
		st.Done("cni-del")
		if err != nil {
			return fmt.Errorf("detach from network %s: %w", nn.Name, err)
		}
		if _, err := os.Stat(netns); netns == "" || err != nil {
			if err := m.removeMasquerade(cniName(&nn), id); err != nil {
				return fmt.Errorf("detach from network %s: %w", nn.Name, err)
			}
		}
	}
	m.event(events.ActionDisconnect, n, id)
	m.mu.Lock()
	defer m.mu.Unlock()
	ep := &c.rec.Endpoints[i]
	if ep.Primary {
		for _, r := range c.held {
			r.close()
		}
		c.held = nil
		c.rec.Ports = nil
	}
	*ep = endpointRecord{NetworkID: ep.NetworkID, Config: ep.Config}
	return nil
}

// Detach disconnects a container from all its networks (at stop, or when
// it exited): one CNI DEL per endpoint, ports released, names withdrawn.
// The configuration stays for the next start. It is idempotent; a DEL
// that fails is reported and the endpoint stays recorded, so that a later
// Detach (or start-up) retries it.
func (m *Manager) Detach(ctx context.Context, id string) error {
	c, err := m.container(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	return m.detachAll(ctx, c)
}

func (m *Manager) detachAll(ctx context.Context, c *ctrState) error {
	m.mu.Lock()
	netns := c.rec.NetNS
	n := len(c.rec.Endpoints)
	m.mu.Unlock()
	if netns == "" {
		return nil
	}
	st := steps.Start(ctx, "detach network")
	defer st.Log("id", c.rec.Container.ID)
	var errs []error
	for i := n - 1; i >= 0; i-- {
		if err := m.detachEndpoint(ctx, c, i, netns, st); err != nil {
			errs = append(errs, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(errs) == 0 {
		c.rec.NetNS = ""
	}
	m.refreshDNS()
	st.Done("dns")
	if err := m.saveContainer(c); err != nil {
		errs = append(errs, err)
	}
	st.Done("save")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("detach container %s: %w", shortID(c.rec.Container.ID), err)
	}
	return nil
}

// Unregister forgets a container at removal, detaching it first. Removing
// an unknown container succeeds.
func (m *Manager) Unregister(ctx context.Context, id string) error {
	c, err := m.container(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := m.detachAll(ctx, c); err != nil {
		// The container goes all the same, as docker rm does: what the DEL
		// left (a lease, a libcni cache entry) no record owns any more,
		// and the next start-up's sweeps free it.
		m.log.Warn("detach a container being removed", "container", id, "error", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := os.Remove(filepath.Join(m.cfg.ctrDir(), id+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unregister container %s: %w", shortID(id), err)
	}
	delete(m.containers, id)
	m.refreshDNS()
	return nil
}

// Rename changes a container's name (DNS, inspect).
func (m *Manager) Rename(ctx context.Context, id, name string) error {
	c, err := m.container(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	c.rec.Container.Name = name
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("rename container %s: %w", shortID(id), err)
	}
	m.refreshDNS()
	return nil
}

// Connect adds a network to a container. A running (attached) container
// gets the interface at once; a created one when it starts. Connecting
// twice, or a container in host, none or container: mode, is refused.
func (m *Manager) Connect(ctx context.Context, id, network string, cfg EndpointConfig) error {
	c, err := m.container(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	n, err := m.find(network)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if err := m.checkConnect(c, n, cfg); err != nil {
		m.mu.Unlock()
		return err
	}
	c.rec.Endpoints = append(c.rec.Endpoints, endpointRecord{NetworkID: n.ID, Config: cloneEndpointConfig(cfg)})
	i := len(c.rec.Endpoints) - 1
	attached := c.rec.NetNS != ""
	// A live connect gives the default route only to a container that has
	// none (its networks are all internal, or the gateway one went).
	gateway := !slices.ContainsFunc(c.rec.Endpoints, func(e endpointRecord) bool { return e.Primary })
	m.mu.Unlock()
	if attached {
		if err := m.attachEndpoint(ctx, c, i, gateway, nil); err != nil {
			m.mu.Lock()
			c.rec.Endpoints = slices.Delete(c.rec.Endpoints, i, i+1)
			m.mu.Unlock()
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("connect container %s to network %s: %w", shortID(id), n.Name, err)
	}
	m.refreshDNS()
	if attached {
		return m.writeFiles(c)
	}
	return nil
}

// checkConnect refuses what Docker refuses at connect (m.mu held).
func (m *Manager) checkConnect(c *ctrState, n *Network, cfg EndpointConfig) error {
	mode := c.rec.Container.Mode
	if isContainerMode(mode) {
		return errdefs.ErrInvalidArgument.WithMessage("container sharing network namespace with another container or host cannot be connected to any other network")
	}
	for _, e := range c.rec.Endpoints {
		on := m.networks[e.NetworkID]
		if on == nil {
			continue
		}
		if on.Driver == DriverHost || n.Driver == DriverHost {
			return errdefs.ErrInvalidArgument.WithMessage("container cannot be disconnected from host network or connected to host network")
		}
		if on.Driver == DriverNull || n.Driver == DriverNull {
			return errdefs.ErrInvalidArgument.WithMessage("container cannot be connected to multiple networks with one of the networks in private (none) mode")
		}
		if e.NetworkID == n.ID {
			return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("endpoint with name %s already exists in network %s", c.rec.Container.Name, n.Name))
		}
	}
	cc := c.rec.Container
	return m.checkEndpoint(&cc, n, cfg, 1)
}

// Disconnect removes a network from a container, detaching it at once if
// it runs. force is accepted for Docker's API (it matters for swarm).
func (m *Manager) Disconnect(ctx context.Context, id, network string, force bool) error {
	c, err := m.container(id)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	n, err := m.find(network)
	if err != nil && !force {
		m.mu.Unlock()
		return err
	}
	i := -1
	for j, e := range c.rec.Endpoints {
		if n != nil && e.NetworkID == n.ID || n == nil && e.NetworkID == network {
			i = j
		}
	}
	name := network
	if n != nil {
		name = n.Name
	}
	if i < 0 {
		m.mu.Unlock()
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("container %s is not connected to network %s", c.rec.Container.Name, name))
	}
	if n != nil && n.Driver == DriverHost {
		m.mu.Unlock()
		return errdefs.ErrInvalidArgument.WithMessage("container cannot be disconnected from host network or connected to host network")
	}
	netns := c.rec.NetNS
	wasPrimary := c.rec.Endpoints[i].Primary
	m.mu.Unlock()
	if netns != "" {
		if err := m.detachEndpoint(ctx, c, i, netns, nil); err != nil {
			return err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c.rec.Endpoints = slices.Delete(c.rec.Endpoints, i, i+1)
	if wasPrimary && netns != "" && netns != noNetNS {
		m.moveGateway(c)
	}
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("disconnect container %s from network %s: %w", shortID(id), name, err)
	}
	m.refreshDNS()
	if netns != "" {
		return m.writeFiles(c)
	}
	return nil
}

// moveGateway gives the default route to the first attached endpoint on a
// network that is not internal, after the one that had it went (m.mu
// held). Published ports went with the old endpoint and are not moved:
// they come back at the next start.
func (m *Manager) moveGateway(c *ctrState) {
	for i := range c.rec.Endpoints {
		e := &c.rec.Endpoints[i]
		n := m.networks[e.NetworkID]
		if e.EndpointID == "" || n == nil || n.Driver != DriverBridge || n.Internal {
			continue
		}
		var gw4, gw6 netip.Addr
		if s, ok := n.subnet4(); ok && e.IPv4.IsValid() {
			gw4 = s.Gateway
		}
		if s, ok := n.subnet6(); ok && e.IPv6.IsValid() {
			gw6 = s.Gateway
		}
		if err := setDefaultRoute(c.rec.NetNS, e.IfName, gw4, gw6); err != nil {
			m.log.Warn("move the default route", "container", c.rec.Container.ID, "error", err)
			return
		}
		e.Primary, e.Gateway, e.IPv6Gateway = true, gw4, gw6
		return
	}
}

// container returns a registered container by ID.
func (m *Manager) container(id string) (*ctrState, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no such container: %s", id))
	}
	return c, nil
}

// ResolveContainer finds a registered container by ID, unique ID prefix or
// name, as Docker resolves container references.
func (m *Manager) ResolveContainer(ref string) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ref = strings.TrimPrefix(ref, "/")
	if _, ok := m.containers[ref]; ok {
		return ref, nil
	}
	for id, c := range m.containers {
		if c.rec.Container.Name == ref {
			return id, nil
		}
	}
	var match []string
	for id := range m.containers {
		if strings.HasPrefix(id, ref) {
			match = append(match, id)
		}
	}
	if len(match) == 1 && ref != "" {
		return match[0], nil
	}
	if len(match) > 1 {
		return "", errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("multiple IDs found with provided prefix: %s", ref))
	}
	return "", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such container: %s", ref))
}

// Settings returns a container's NetworkSettings content.
func (m *Manager) Settings(id string) (Settings, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return Settings{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no such container: %s", id))
	}
	return m.settings(c), nil
}

// settings builds Settings (m.mu held).
func (m *Manager) settings(c *ctrState) Settings {
	s := Settings{Mode: c.rec.Container.Mode, ExposedPorts: slices.Clone(c.rec.Container.ExposedPorts)}
	if s.Mode == "" {
		s.Mode = ModeDefault
	}
	if c.rec.NetNS != "" && c.rec.NetNS != noNetNS {
		s.SandboxKey = c.rec.NetNS
	}
	for _, e := range c.rec.Endpoints {
		s.Endpoints = append(s.Endpoints, m.endpoint(c, e))
	}
	s.Ports = slices.Clone(c.rec.Ports)
	sort.Slice(s.Ports, func(i, j int) bool {
		if d := comparePorts(s.Ports[i].Port, s.Ports[j].Port); d != 0 {
			return d < 0
		}
		return s.Ports[i].HostIP.Less(s.Ports[j].HostIP)
	})
	for p := range c.rec.Container.PortBindings {
		if !slices.Contains(s.ExposedPorts, p) {
			s.ExposedPorts = append(s.ExposedPorts, p)
		}
	}
	slices.SortFunc(s.ExposedPorts, comparePorts)
	return s
}

// endpoint builds an Endpoint (m.mu held).
func (m *Manager) endpoint(c *ctrState, e endpointRecord) Endpoint {
	out := Endpoint{
		NetworkID: e.NetworkID, Config: cloneEndpointConfig(e.Config),
		EndpointID: e.EndpointID, IfName: e.IfName, MAC: e.MAC,
		IPv4: e.IPv4, Gateway: e.Gateway, IPv6: e.IPv6, IPv6Gateway: e.IPv6Gateway,
	}
	if n := m.networks[e.NetworkID]; n != nil {
		out.NetworkName = n.Name
		if n.Names() {
			out.DNSNames = dnsNames(&c.rec.Container, e.Config.Aliases)
		}
	}
	return out
}

// Files returns the /etc/hosts and /etc/resolv.conf content a registered
// container gets now (what Attach and Connect write).
func (m *Manager) Files(id string) (hosts, resolvConf []byte, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.containers[id]
	if c == nil {
		return nil, nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no such container: %s", id))
	}
	return m.hostsFile(c), m.resolvConf(c), nil
}
