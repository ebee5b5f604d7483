package cni

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// Detach undoes Attach: DEL of the pod's network, then of loopback. It is
// idempotent and does its job when the namespace is gone (pass the same
// path; a missing path becomes an empty CNI_NETNS, as containerd does, so
// IPAM still frees the lease). It uses the config, CNI_ARGS and capability
// args cached at ADD, so a config changed or removed since still tears down
// what was set up; for a pod whose ADD never completed (no cache entry),
// the config and partial result its intent recorded. On success the
// pod's intent is removed.
func (m *Manager) Detach(ctx context.Context, req DetachRequest) error {
	it, err := m.readIntent(req.ID)
	if err != nil {
		// A damaged intent cannot help; the cache or the current config
		// still can.
		it = nil
	}
	if err := m.detach(ctx, req, it); err != nil {
		return err
	}
	return m.removeIntent(req.ID)
}

func (m *Manager) detach(ctx context.Context, req DetachRequest, it *intent) error {
	netns := req.NetNS
	if netns != "" {
		if err := m.checkNetNS(netns); errors.Is(err, errdefs.ErrNotFound) {
			netns = ""
		} else if err != nil {
			return fmt.Errorf("detach pod %s: %w", req.ID, err)
		}
	}
	rt, err := m.runtimeConf(req, netns)
	if err != nil {
		return fmt.Errorf("detach pod %s: %w", req.ID, err)
	}

	targets, err := m.detachTargets(rt)
	if err != nil {
		return fmt.Errorf("detach pod %s: %w", req.ID, err)
	}
	if len(targets) == 0 && it != nil {
		// The ADD never completed: DEL each plugin of the config it ran
		// with, told what the plugins that did run returned.
		list, err := it.list()
		if err != nil {
			return fmt.Errorf("detach pod %s: %w", req.ID, err)
		}
		if err := findPlugins(m.cfg.BinDirs, pluginTypes(m.loopback, list)...); err != nil {
			return fmt.Errorf("detach pod %s from network %s: %w", req.ID, list.Name, err)
		}
		loRT := *rt
		loRT.IfName = loopbackIfName
		loRT.CapabilityArgs = nil
		if err := m.rollback(ctx, list, it.Result, &loRT, rt); err != nil {
			return fmt.Errorf("detach pod %s from network %s: %w", req.ID, list.Name, err)
		}
		return nil
	}
	if len(targets) == 0 {
		if targets, err = m.currentTarget(rt); err != nil {
			return fmt.Errorf("detach pod %s: %w", req.ID, err)
		}
	}
	for _, t := range targets {
		if err := findPlugins(m.cfg.BinDirs, pluginTypes(m.loopback, t.list)...); err != nil {
			return fmt.Errorf("detach pod %s from network %s: %w", req.ID, t.list.Name, err)
		}
		if err := m.cni.DelNetworkList(ctx, t.list, t.rt); err != nil {
			return fmt.Errorf("detach pod %s from network %s: %w", req.ID, t.list.Name, classify(err))
		}
	}

	loRT := *rt
	loRT.IfName = loopbackIfName
	loRT.CapabilityArgs = nil
	// lo has nothing to release; its DEL only drops libcni's cache entry
	// (and with the namespace gone there is nothing to bring down). With
	// LoopbackUp no ADD made one, unless an older config did: the plugin
	// runs only when there is an entry to drop (an exec saved per pod).
	if cached, _, err := m.cni.GetNetworkCachedConfig(m.loopback, &loRT); err != nil || cached != nil || !m.cfg.LoopbackUp {
		_ = m.cni.DelNetwork(ctx, m.loopback, &loRT)
	}
	return nil
}

// detachTarget is one network DEL to run.
type detachTarget struct {
	list *libcni.NetworkConfigList
	rt   *libcni.RuntimeConf
}

// detachTargets returns the networks the pod is attached to according to
// libcni's cache, each with the arguments its ADD had.
func (m *Manager) detachTargets(rt *libcni.RuntimeConf) ([]detachTarget, error) {
	atts, err := m.cni.GetCachedAttachments(rt.ContainerID)
	if err != nil {
		return nil, fmt.Errorf("read cni cache: %w", err)
	}
	var out []detachTarget
	for _, a := range atts {
		if a.Network == m.loopback.Network.Name {
			continue
		}
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil || len(list.Plugins) == 0 || list.Name != a.Network {
			// A cache entry libcni wrote for a single plugin or a damaged one:
			// fall back to the current config below.
			continue
		}
		art := *rt
		art.IfName = a.IfName
		if len(a.CniArgs) > 0 {
			art.Args = a.CniArgs
		}
		if len(a.CapabilityArgs) > 0 {
			art.CapabilityArgs = a.CapabilityArgs
		}
		out = append(out, detachTarget{list: list, rt: &art})
	}
	return out, nil
}

// currentTarget is the DEL of the current network with rt, for a pod
// nothing records: plugins treat it as a no-op when nothing is left.
func (m *Manager) currentTarget(rt *libcni.RuntimeConf) ([]detachTarget, error) {
	net, err := m.loadNetwork()
	if errors.Is(err, errdefs.ErrFailedPrecondition) {
		// No cache entry and no config: nothing was attached that we could
		// still tear down.
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return []detachTarget{{list: net.list, rt: rt}}, nil
}

// Status checks the pod's attachment with the plugins' CHECK (unless the
// config disables it) and returns the result cached at ADD. It is
// ErrNotFound when the pod has no cached attachment (never attached,
// detached, or attached before a cache loss).
func (m *Manager) Status(ctx context.Context, id, netns string) (Result, error) {
	if err := m.checkNetNS(netns); err != nil {
		return Result{}, fmt.Errorf("network status of pod %s: %w", id, err)
	}
	atts, err := m.cni.GetCachedAttachments(id)
	if err != nil {
		return Result{}, fmt.Errorf("network status of pod %s: read cni cache: %w", id, err)
	}
	for _, a := range atts {
		if a.Network == m.loopback.Network.Name {
			continue
		}
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil || list.Name != a.Network {
			continue
		}
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		cached, err := m.cni.GetNetworkListCachedResult(list, rt)
		if err != nil || cached == nil {
			return Result{}, fmt.Errorf("network status of pod %s: cached result of %s: %w: %v", id, a.Network, errdefs.ErrNotFound, err)
		}
		if !list.DisableCheck {
			if err := m.cni.CheckNetworkList(ctx, list, rt); err != nil {
				return Result{}, fmt.Errorf("check pod %s on network %s: %w", id, a.Network, classify(err))
			}
		}
		res, err := resultFromCNI(cached, a.IfName)
		if err != nil {
			return Result{}, fmt.Errorf("network status of pod %s: %w", id, err)
		}
		res.Network = a.Network
		return res, nil
	}
	return Result{}, fmt.Errorf("network status of pod %s: %w: no cached attachment", id, errdefs.ErrNotFound)
}
