package network

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/engine/network/resolver"
	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/internal/steps"
)

// Create makes a user-defined network: its record, its conflist, its
// bridge with the gateway addresses, its isolation rules and its DNS
// listener. On error nothing of it is left.
func (m *Manager) Create(ctx context.Context, opts CreateOptions) (_ Network, retErr error) {
	if err := validateName(opts.Name); err != nil {
		return Network{}, err
	}
	if predefined(opts.Name) {
		return Network{}, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("operation is not permitted on predefined %s network", opts.Name))
	}
	switch opts.Driver {
	case "", DriverBridge:
	case DriverHost, DriverNull:
		return Network{}, errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("only one instance of %q network is allowed", opts.Driver))
	default:
		return Network{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("plugin %q not found", opts.Driver))
	}
	switch opts.IPAM.Driver {
	case "", "default":
	default:
		return Network{}, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("IPAM driver %q is not supported (only default)", opts.IPAM.Driver))
	}
	n := &Network{
		ID:         newID(),
		Name:       opts.Name,
		Driver:     DriverBridge,
		Created:    time.Now().UTC(),
		Internal:   opts.Internal,
		Attachable: opts.Attachable,
		EnableIPv6: opts.EnableIPv6,
		IPAM:       IPAM{Driver: "default", Options: maps.Clone(opts.IPAM.Options), Config: cloneIPAM(opts.IPAM.Config)},
		Options:    maps.Clone(opts.Options),
		Labels:     maps.Clone(opts.Labels),
	}
	if n.Options == nil {
		n.Options = map[string]string{}
	}
	if n.Labels == nil {
		n.Labels = map[string]string{}
	}
	if n.IPAM.Options == nil {
		n.IPAM.Options = map[string]string{}
	}
	if err := bridgeOptions(n, n.Options, m.cfg.MTU); err != nil {
		return Network{}, err
	}
	if n.Bridge == "" {
		n.Bridge = "br-" + shortID(n.ID)
	}
	if err := checkIPAM(n.IPAM.Config, n.EnableIPv6); err != nil {
		return Network{}, err
	}
	if n.EnableIPv6 {
		if b, err := os.ReadFile("/proc/sys/net/ipv6/conf/all/disable_ipv6"); err != nil || strings.TrimSpace(string(b)) != "0" {
			return Network{}, errdefs.ErrNotImplemented.WithMessage("IPv6 is disabled on this host (net.ipv6.conf.all.disable_ipv6, or no IPv6 in the kernel): cannot create an IPv6 network")
		}
	}

	st := steps.Start(ctx, "create network")
	defer func() { st.Log("network", n.Name) }()
	m.netOp.Lock()
	defer m.netOp.Unlock()
	st.Done("wait")
	m.mu.Lock()
	for _, o := range m.networks {
		if o.Name == n.Name {
			m.mu.Unlock()
			return Network{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("network with name %s already exists", n.Name))
		}
		if o.Bridge != "" && o.Bridge == n.Bridge {
			m.mu.Unlock()
			return Network{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("bridge name %s is used by network %s", n.Bridge, o.Name))
		}
	}
	err := m.assignSubnets(n)
	m.mu.Unlock()
	if err != nil {
		return Network{}, err
	}
	if bridgeExists(n.Bridge) {
		return Network{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("an interface named %s already exists on the host", n.Bridge))
	}

	// The record first, marked as being removed until the network is
	// complete: a crash in between leaves a removal for start-up to
	// finish, never a half-made network that looks whole.
	st.Done("subnet")
	if err := m.saveNetwork(n, true); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	st.Done("record")
	defer func() {
		if retErr != nil {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := m.teardown(cctx, n, nil); err != nil {
				m.log.Warn("undo network creation", "network", n.Name, "error", err)
			}
		}
	}()
	if err := m.setup(n, st); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	if err := m.saveNetwork(n, false); err != nil {
		return Network{}, fmt.Errorf("create network %s: %w", n.Name, err)
	}
	st.Done("record")
	m.mu.Lock()
	m.networks[n.ID] = n
	m.mu.Unlock()
	m.event(events.ActionCreate, n, "")
	return n.clone(), nil
}

func cloneIPAM(in []IPAMConfig) []IPAMConfig {
	out := make([]IPAMConfig, len(in))
	for i, c := range in {
		out[i] = c
		out[i].AuxAddress = maps.Clone(c.AuxAddress)
	}
	return out
}

// assignSubnets checks the requested subnets against the others, picks an
// IPv4 one when none was asked, and fills the gateways (m.mu held).
func (m *Manager) assignSubnets(n *Network) error {
	if _, ok := n.subnet4(); !ok {
		s, err := m.pickSubnet()
		if err != nil {
			return err
		}
		n.IPAM.Config = append([]IPAMConfig{{Subnet: s}}, n.IPAM.Config...)
	} else {
		for _, c := range n.IPAM.Config {
			if err := m.checkFree(c.Subnet, ""); err != nil {
				return err
			}
		}
	}
	for i := range n.IPAM.Config {
		c := &n.IPAM.Config[i]
		if !c.Gateway.IsValid() {
			c.Gateway = c.Subnet.Masked().Addr().Next()
		}
	}
	return nil
}

// setup puts a network's host side in place: conflist, bridge, isolation,
// auxiliary address reservations, DNS listener. It is idempotent (start-up
// runs it for every network). st (nil: none) times its steps.
func (m *Manager) setup(n *Network, st *steps.Timer) error {
	conf, err := m.conflist(n, variant{gateway: true})
	if err != nil {
		return err
	}
	if err := atomicfile.Replace(m.conflistPath(n), conf, 0o600); err != nil {
		return err
	}
	if err := m.reserveAux(n); err != nil {
		return err
	}
	st.Done("conflist")
	if err := m.ensureBridge(n); err != nil {
		return err
	}
	st.Done("bridge")
	if err := m.ensureIsolation(n); err != nil {
		return err
	}
	st.Done("rules")
	err = m.listen(n)
	st.Done("dns")
	return err
}

// listen starts n's DNS listener on its IPv4 gateway.
func (m *Manager) listen(n *Network) error {
	c, ok := n.subnet4()
	if !ok {
		return nil
	}
	nn := n.clone()
	return m.dns.Listen(c.Gateway, func() error {
		if err := m.ensureBridge(&nn); err != nil {
			return err
		}
		return m.ensureIsolation(&nn)
	})
}

// auxPrefix marks lease files that hold an auxiliary address.
const auxPrefix = "berth-aux:"

// reserveAux writes a host-local lease for each auxiliary address, so
// that IPAM never hands them out.
func (m *Manager) reserveAux(n *Network) error {
	dir := filepath.Join(m.cfg.ipamDir(), cniName(n))
	for _, c := range n.IPAM.Config {
		if len(c.AuxAddress) == 0 {
			continue
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		for name, a := range c.AuxAddress {
			if err := atomicfile.Replace(filepath.Join(dir, a.String()), []byte(auxPrefix+name), 0o600); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown removes a network's host side and its record: DNS listener,
// isolation rules, bridge, leases, conflist. It is idempotent. st (nil:
// none) times its steps.
func (m *Manager) teardown(ctx context.Context, n *Network, st *steps.Timer) error {
	if c, ok := n.subnet4(); ok {
		m.dns.Unlisten(c.Gateway)
	}
	st.Done("dns")
	// The rules and the bridge go at once: the kernel takes tens of
	// milliseconds to unregister a bridge (RCU grace periods), as long as
	// the rules' read and restore.
	rulesErr := make(chan error, 1)
	go func() { rulesErr <- m.removeIsolation(n) }()
	var errs []error
	if err := m.deleteBridge(n); err != nil {
		errs = append(errs, err)
	}
	st.Done("bridge")
	if err := <-rulesErr; err != nil {
		errs = append(errs, err)
	}
	st.Done("rules")
	if err := os.RemoveAll(filepath.Join(m.cfg.ipamDir(), cniName(n))); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(m.conflistPath(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.Remove(filepath.Join(m.cfg.netDir(), n.ID+".json")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	st.Done("files")
	return nil
}

// Remove deletes a user-defined network that no running container uses.
func (m *Manager) Remove(ctx context.Context, idOrName string) error {
	st := steps.Start(ctx, "remove network")
	defer func() { st.Log("network", idOrName) }()
	m.netOp.Lock()
	defer m.netOp.Unlock()
	st.Done("wait")
	m.mu.Lock()
	n, err := m.find(idOrName)
	if err != nil {
		m.mu.Unlock()
		return err
	}
	if n.Predefined() {
		m.mu.Unlock()
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("%s is a pre-defined network and cannot be removed", n.Name))
	}
	if who, busy := m.inUse(n.ID); busy {
		m.mu.Unlock()
		detail := ""
		if who != "" {
			detail = fmt.Sprintf(" (name:%q id:%q)", who, shortID(m.containerIDByName(who)))
		}
		return errdefs.ErrPermissionDenied.WithMessage(fmt.Sprintf("error while removing network: network %s id %s has active endpoints%s", n.Name, n.ID, detail))
	}
	m.removing[n.ID] = true
	m.mu.Unlock()
	return m.remove(ctx, n, st)
}

// remove finishes a removal: the record says so first, so that a crash
// in the middle is finished at start-up. st (nil: none) times its steps.
func (m *Manager) remove(ctx context.Context, n *Network, st *steps.Timer) error {
	if err := m.saveNetwork(n, true); err != nil {
		m.mu.Lock()
		delete(m.removing, n.ID)
		m.mu.Unlock()
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	st.Done("record")
	if err := m.teardown(ctx, n, st); err != nil {
		// Stays marked: the next start-up tries again.
		return fmt.Errorf("remove network %s: %w", n.Name, err)
	}
	m.mu.Lock()
	delete(m.networks, n.ID)
	delete(m.removing, n.ID)
	m.refreshDNS()
	m.mu.Unlock()
	m.event(events.ActionDestroy, n, "")
	return nil
}

// Prune removes the user-defined networks that no running container uses
// and keep accepts (nil keeps nothing back); it returns their names.
func (m *Manager) Prune(ctx context.Context, keep func(Network) bool) ([]string, error) {
	var removed []string
	var errs []error
	for _, n := range m.List() {
		if n.Predefined() || (keep != nil && keep(n)) {
			continue
		}
		err := m.Remove(ctx, n.ID)
		switch {
		case err == nil:
			removed = append(removed, n.Name)
		case errdefs.IsPermissionDenied(err), errdefs.IsNotFound(err):
			// In use, or removed meanwhile.
		default:
			errs = append(errs, err)
		}
	}
	return removed, errJoin(errs)
}

// containerIDByName returns the ID of the container with that name (m.mu
// held).
func (m *Manager) containerIDByName(name string) string {
	for id, c := range m.containers {
		if c.rec.Container.Name == name {
			return id
		}
	}
	return ""
}

// refreshDNS gives the responder a table of every attached endpoint
// (m.mu held).
func (m *Manager) refreshDNS() {
	var entries []resolver.Entry
	for _, c := range m.containers {
		var ups []netip.AddrPort
		for _, s := range c.rec.Container.DNS {
			ups = append(ups, netip.AddrPortFrom(s, resolver.Port))
		}
		for _, e := range c.rec.Endpoints {
			n := m.networks[e.NetworkID]
			if n == nil || e.EndpointID == "" || n.Driver != DriverBridge {
				continue
			}
			var addrs []netip.Addr
			if e.IPv4.IsValid() {
				addrs = append(addrs, e.IPv4.Addr())
			}
			if e.IPv6.IsValid() {
				addrs = append(addrs, e.IPv6.Addr())
			}
			ent := resolver.Entry{
				Network: n.ID, NetworkName: n.Name, Names: n.Names(), Subnets: n.subnets(),
				Container: c.rec.Container.ID, Addrs: addrs, Upstreams: ups,
			}
			if n.Names() {
				ent.DNSNames = dnsNames(&c.rec.Container, e.Config.Aliases)
			}
			entries = append(entries, ent)
		}
	}
	// Networks without containers still let their subnet's sources (the
	// host, a container being attached) forward.
	for _, n := range m.networks {
		if n.Driver == DriverBridge {
			entries = append(entries, resolver.Entry{Network: n.ID, NetworkName: n.Name, Names: n.Names(), Subnets: n.subnets()})
		}
	}
	m.dns.SetTable(resolver.NewTable(entries))
}
