package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/cni"
)

// ensureDefault sets up the default network's bridge on first use: every
// berthd on a host would otherwise make it at start, tests included. A
// subnet picked from the pools that a host route covers by now is picked
// again; a configured one is an error.
//
// Once set up, every later attach only checks that the bridge is still
// there (a netlink read): the set-up rewrites the conflist and the rules
// (an iptables read and restore, 10-40 ms), which each container start on
// the default bridge paid before.
func (m *Manager) ensureDefault() error {
	m.mu.Lock()
	up := m.defaultUp
	m.mu.Unlock()
	if up != "" && bridgeExists(up) {
		return nil
	}
	m.netOp.Lock()
	defer m.netOp.Unlock()
	m.mu.Lock()
	var n *Network
	for _, o := range m.networks {
		if o.Name == NameBridge {
			n = o
		}
	}
	if n == nil {
		m.mu.Unlock()
		return errdefs.ErrNotFound.WithMessage("network bridge not found")
	}
	if bridgeExists(n.Bridge) {
		nn := n.clone()
		m.mu.Unlock()
		if err := m.setup(&nn, nil); err != nil {
			return fmt.Errorf("set up the default network: %w", err)
		}
		m.markDefaultUp(nn.Bridge)
		return nil
	}
	if c, ok := n.subnet4(); ok {
		if err := m.checkFree(c.Subnet, n.ID); err != nil {
			if m.cfg.DefaultSubnet.IsValid() {
				m.mu.Unlock()
				return fmt.Errorf("set up the default network: %w", err)
			}
			fresh := n.clone()
			if err := m.defaultBridge(&fresh); err != nil {
				m.mu.Unlock()
				return err
			}
			if err := m.saveNetwork(&fresh, false); err != nil {
				m.mu.Unlock()
				return err
			}
			*n = fresh
			m.log.Info("default network moved to a free subnet", "subnet", fresh.IPAM.Config[0].Subnet)
		}
	}
	nn := n.clone()
	m.mu.Unlock()
	if err := m.setup(&nn, nil); err != nil {
		return fmt.Errorf("set up the default network: %w", err)
	}
	m.markDefaultUp(nn.Bridge)
	return nil
}

// markDefaultUp records that the default network's bridge br is set up.
func (m *Manager) markDefaultUp(br string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.defaultUp = br
}

// reconcile brings the host in line with the records after a start; what
// fails is logged and left for the next start.
func (m *Manager) reconcile(ctx context.Context) {
	log := m.log
	m.mu.Lock()
	var nets []*Network
	for _, n := range m.networks {
		nets = append(nets, n)
	}
	m.mu.Unlock()

	// Removals a crash interrupted.
	for _, n := range nets {
		m.mu.Lock()
		removing := m.removing[n.ID]
		m.mu.Unlock()
		if removing {
			if err := m.remove(ctx, n, nil); err != nil {
				log.Warn("finish removing network", "network", n.Name, "error", err)
			} else {
				log.Info("finished removing network", "network", n.Name)
			}
		}
	}

	// Attachments whose namespace is gone (the container died with the
	// host, or its sandbox was removed while berthd was down).
	m.mu.Lock()
	var ctrs []*ctrState
	for _, c := range m.containers {
		ctrs = append(ctrs, c)
	}
	m.mu.Unlock()
	for _, c := range ctrs {
		if c.rec.NetNS == "" || c.rec.NetNS == noNetNS {
			continue
		}
		if _, err := os.Stat(c.rec.NetNS); err == nil {
			// Still attached: hold its ports again.
			m.rehold(c)
			continue
		}
		c.op.Lock()
		err := m.detachAll(ctx, c)
		c.op.Unlock()
		if err != nil {
			log.Warn("detach a container whose namespace is gone", "container", c.rec.Container.ID, "error", err)
		}
	}

	// Bridges, rules and listeners of the networks; the default one only
	// when its bridge is there already or a container uses it.
	m.mu.Lock()
	nets = nets[:0]
	for _, n := range m.networks {
		if n.Driver == DriverBridge {
			nets = append(nets, n)
		}
	}
	m.mu.Unlock()
	for _, n := range nets {
		if n.Name == NameBridge {
			m.mu.Lock()
			_, used := m.inUse(n.ID)
			m.mu.Unlock()
			if !used && !bridgeExists(n.Bridge) {
				continue
			}
		}
		m.mu.Lock()
		nn := n.clone()
		m.mu.Unlock()
		if err := m.setup(&nn, nil); err != nil {
			log.Warn("restore network", "network", n.Name, "error", err)
		} else if nn.Name == NameBridge {
			m.markDefaultUp(nn.Bridge)
		}
	}

	// Bridges of this root whose network is gone.
	if ours, err := m.ourBridges(); err == nil {
		for id, name := range ours {
			m.mu.Lock()
			n := m.networks[id]
			m.mu.Unlock()
			if n != nil && n.Bridge == name {
				continue
			}
			orphan := &Network{ID: id, Name: name, Bridge: name}
			if err := m.removeIsolation(orphan); err != nil {
				log.Warn("remove rules of an orphan bridge", "bridge", name, "error", err)
			}
			if err := m.deleteBridge(orphan); err != nil {
				log.Warn("delete orphan bridge", "bridge", name, "error", err)
			}
		}
	}

	m.sweepCNI(ctx)
	m.sweepPorts()
	m.sweepLeases()
	m.mu.Lock()
	m.refreshDNS()
	m.mu.Unlock()
}

// rehold reserves the published ports of a container that is still
// attached after a restart.
func (m *Manager) rehold(c *ctrState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range c.rec.Ports {
		r, err := reserve(p.Port.Proto, p.HostIP, p.HostPort)
		if err != nil {
			m.log.Warn("hold a published port again", "container", c.rec.Container.ID, "port", p.HostPort, "error", err)
			continue
		}
		c.held = append(c.held, r)
	}
}

// attachedKey names one attachment: container, CNI network, interface.
type attachedKey struct{ id, network, ifName string }

// attachedSet lists the attachments the records hold (m.mu held).
func (m *Manager) attachedSet() map[attachedKey]bool {
	out := map[attachedKey]bool{}
	for _, c := range m.containers {
		for _, e := range c.rec.Endpoints {
			n := m.networks[e.NetworkID]
			if n == nil || e.EndpointID == "" {
				continue
			}
			out[attachedKey{c.rec.Container.ID, cniName(n), e.IfName}] = true
		}
	}
	return out
}

// sweepCNI detaches what libcni's cache holds but no record does: an
// attach berthd died in, after the ADD and before the record.
func (m *Manager) sweepCNI(ctx context.Context) {
	atts, err := m.cni.Attachments()
	if err != nil {
		m.log.Warn("read the cni cache", "error", err)
		return
	}
	m.mu.Lock()
	keep := m.attachedSet()
	m.mu.Unlock()
	for _, a := range atts {
		if keep[attachedKey{a.ID, a.Network, a.IfName}] {
			continue
		}
		conf := m.cni.CachedConfig(a.ID, a.Network, a.IfName)
		if conf == nil {
			continue
		}
		err := m.cni.DetachNetwork(ctx, cni.NetworkRequest{ID: a.ID, NetNS: a.NetNS, IfName: a.IfName, Config: conf})
		if err != nil {
			m.log.Warn("detach a stale attachment", "container", a.ID, "network", a.Network, "error", err)
			continue
		}
		if _, err := os.Stat(a.NetNS); a.NetNS == "" || err != nil {
			if err := m.removeMasquerade(a.Network, a.ID); err != nil {
				m.log.Warn("remove masquerade rules of a stale attachment", "container", a.ID, "error", err)
			}
		}
		m.log.Info("detached a stale attachment", "container", a.ID, "network", a.Network)
	}
}

// sweepLeases removes host-local leases that no attachment owns: an ADD
// berthd died in before libcni cached anything leaves one.
func (m *Manager) sweepLeases() {
	m.mu.Lock()
	keep := m.attachedSet()
	nets := map[string]bool{}
	for _, n := range m.networks {
		nets[cniName(n)] = true
	}
	m.mu.Unlock()
	dirs, err := os.ReadDir(m.cfg.ipamDir())
	if err != nil {
		return
	}
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		dir := filepath.Join(m.cfg.ipamDir(), d.Name())
		if !nets[d.Name()] {
			// The network is gone.
			if err := os.RemoveAll(dir); err != nil {
				m.log.Warn("remove the leases of a removed network", "dir", dir, "error", err)
			}
			continue
		}
		files, _ := os.ReadDir(dir)
		for _, f := range files {
			if _, err := netip.ParseAddr(f.Name()); err != nil {
				continue // lock, last_reserved_ip.N
			}
			id, ifName, aux := readLease(filepath.Join(dir, f.Name()))
			if aux || keep[attachedKey{id, d.Name(), ifName}] {
				continue
			}
			if err := os.Remove(filepath.Join(dir, f.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				m.log.Warn("free a stale lease", "lease", f.Name(), "error", err)
				continue
			}
			m.log.Info("freed a stale lease", "network", d.Name(), "address", f.Name(), "container", id)
		}
	}
}

// readLease reads a host-local lease file: the container ID, then the
// interface, one a line.
func readLease(path string) (id, ifName string, aux bool) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var lines []string
	for sc.Scan() {
		lines = append(lines, strings.TrimSpace(sc.Text()))
	}
	if len(lines) > 0 && strings.HasPrefix(lines[0], auxPrefix) {
		return "", "", true
	}
	if len(lines) > 0 {
		id = lines[0]
	}
	if len(lines) > 1 {
		ifName = lines[1]
	}
	return id, ifName, false
}

// GC forgets the containers the engine does not list in keep: detaches
// them and drops their records. The engine calls it once at start-up,
// after loading its own records. It returns the IDs it dropped.
func (m *Manager) GC(ctx context.Context, keep []string) ([]string, error) {
	m.mu.Lock()
	var gone []string
	for id := range m.containers {
		if !slices.Contains(keep, id) {
			gone = append(gone, id)
		}
	}
	m.mu.Unlock()
	var errs []error
	var done []string
	for _, id := range gone {
		if err := m.Unregister(ctx, id); err != nil {
			errs = append(errs, err)
			continue
		}
		done = append(done, id)
	}
	return done, errors.Join(errs...)
}
