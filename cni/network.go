package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// NetworkRequest attaches one interface of a namespace to one network whose
// config the caller gives: the engine's own networks, which live outside
// ConfDir and of which a container may join several (eth0, eth1, ...).
// AttachNetwork and DetachNetwork take the same values.
type NetworkRequest struct {
	// ID is CNI_CONTAINERID. Together with the network's name and IfName
	// it keys libcni's cache, so one ID may hold one interface per network.
	ID string
	// NetNS is the pinned namespace; for DetachNetwork it may be gone.
	NetNS string
	// IfName is the interface inside the namespace (eth0, eth1, ...).
	IfName string
	// Config is the network's conflist (JSON).
	Config []byte
	// PortMappings go to plugins with the portMappings capability.
	PortMappings []PortMapping
	// IPs are addresses the container asks for (the ips capability, which
	// host-local honours), each with or without a prefix length.
	IPs []netip.Addr
	// MAC is the interface's hardware address (the mac capability, which
	// the bridge plugin honours); empty lets the kernel choose.
	MAC string
}

// Attachment is one interface libcni's cache says is attached.
type Attachment struct {
	ID      string
	Network string
	IfName  string
	NetNS   string
}

// AttachNetwork runs ADD of req.Config for one interface. On failure every
// plugin that ran gets its DEL before AttachNetwork returns, so no lease is
// left. Loopback is the caller's (the runtime brings lo up when it pins a
// namespace).
func (m *Manager) AttachNetwork(ctx context.Context, req NetworkRequest) (Result, error) {
	list, rt, err := m.networkConf(req, req.NetNS)
	if err != nil {
		return Result{}, fmt.Errorf("attach %s: %w", req.ID, err)
	}
	if err := m.checkNetNS(req.NetNS); err != nil {
		return Result{}, fmt.Errorf("attach %s to network %s: %w", req.ID, list.Name, err)
	}
	if err := findPlugins(m.cfg.BinDirs, pluginTypesOf(list)...); err != nil {
		return Result{}, fmt.Errorf("attach %s to network %s: %w", req.ID, list.Name, err)
	}
	rec := &addRecorder{Exec: m.exec}
	res, err := libcni.NewCNIConfigWithCacheDir(m.cfg.BinDirs, m.cfg.CacheDir, rec).AddNetworkList(ctx, list, rt)
	if err != nil {
		m.rollback(ctx, list, rec.last, nil, rt)
		return Result{}, fmt.Errorf("attach %s to network %s: %w", req.ID, list.Name, classify(err))
	}
	out, err := resultFromCNI(res, rt.IfName)
	if err != nil {
		m.rollback(ctx, list, rec.last, nil, rt)
		return Result{}, fmt.Errorf("attach %s to network %s: %w", req.ID, list.Name, err)
	}
	out.Network = list.Name
	return out, nil
}

// DetachNetwork undoes AttachNetwork for one interface. It is idempotent and
// works when the namespace is gone (an empty CNI_NETNS then, so IPAM still
// frees the lease). It uses the config and capability args cached at ADD
// when there are any, else req's.
func (m *Manager) DetachNetwork(ctx context.Context, req NetworkRequest) error {
	netns := req.NetNS
	if netns != "" {
		if err := m.checkNetNS(netns); errors.Is(err, errdefs.ErrNotFound) {
			netns = ""
		} else if err != nil {
			return fmt.Errorf("detach %s: %w", req.ID, err)
		}
	}
	list, rt, err := m.networkConf(req, netns)
	if err != nil {
		return fmt.Errorf("detach %s: %w", req.ID, err)
	}
	cachedBytes, cachedRT, err := m.cni.GetNetworkListCachedConfig(list, rt)
	if err == nil && cachedBytes != nil {
		if cached, err := libcni.ConfListFromBytes(cachedBytes); err == nil && cached.Name == list.Name && len(cached.Plugins) > 0 {
			list = cached
			if cachedRT != nil {
				if len(cachedRT.CapabilityArgs) > 0 {
					rt.CapabilityArgs = cachedRT.CapabilityArgs
				}
				if len(cachedRT.Args) > 0 {
					rt.Args = cachedRT.Args
				}
			}
		}
	}
	if err := findPlugins(m.cfg.BinDirs, pluginTypesOf(list)...); err != nil {
		return fmt.Errorf("detach %s from network %s: %w", req.ID, list.Name, err)
	}
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("detach %s from network %s: %w", req.ID, list.Name, classify(err))
	}
	return nil
}

// Attachments lists what libcni's cache says is attached, for start-up
// reconciliation: an entry whose owner the caller no longer knows is
// detached with DetachNetwork (its config comes from the cache).
func (m *Manager) Attachments() ([]Attachment, error) {
	atts, err := m.cni.GetCachedAttachments("")
	if err != nil {
		return nil, fmt.Errorf("read cni cache: %w", err)
	}
	out := make([]Attachment, 0, len(atts))
	for _, a := range atts {
		out = append(out, Attachment{ID: a.ContainerID, Network: a.Network, IfName: a.IfName, NetNS: a.NetNS})
	}
	return out, nil
}

// CachedConfig returns the conflist cached when id's interface ifName was
// attached to the network named network, or nil when there is none.
func (m *Manager) CachedConfig(id, network, ifName string) []byte {
	list := &libcni.NetworkConfigList{Name: network}
	b, _, err := m.cni.GetNetworkListCachedConfig(list, &libcni.RuntimeConf{ContainerID: id, IfName: ifName})
	if err != nil {
		return nil
	}
	return b
}

// networkConf parses req's config and builds libcni's arguments.
func (m *Manager) networkConf(req NetworkRequest, netns string) (*libcni.NetworkConfigList, *libcni.RuntimeConf, error) {
	if req.ID == "" || strings.ContainsAny(req.ID, ";=") {
		return nil, nil, fmt.Errorf("%w: container id %q is empty or holds ';' or '='", errdefs.ErrInvalidArgument, req.ID)
	}
	if req.IfName == "" || len(req.IfName) > 15 || strings.ContainsAny(req.IfName, "/ \t\n") || req.IfName == "." || req.IfName == ".." {
		return nil, nil, fmt.Errorf("%w: interface name %q", errdefs.ErrInvalidArgument, req.IfName)
	}
	list, err := libcni.ConfListFromBytes(req.Config)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: network config: %w", errdefs.ErrInvalidArgument, err)
	}
	if list.Name == "" || len(list.Plugins) == 0 {
		return nil, nil, fmt.Errorf("%w: network config has no name or no plugins", errdefs.ErrInvalidArgument)
	}
	for _, p := range list.Plugins {
		if p.Network == nil || p.Network.Type == "" {
			return nil, nil, fmt.Errorf("%w: network config %s: a plugin has no type", errdefs.ErrInvalidArgument, list.Name)
		}
	}
	pod, err := m.runtimeConf(PodArgs{ID: req.ID, PortMappings: req.PortMappings}, netns)
	if err != nil {
		return nil, nil, err
	}
	rt := &libcni.RuntimeConf{
		ContainerID:    req.ID,
		NetNS:          netns,
		IfName:         req.IfName,
		Args:           [][2]string{{"IgnoreUnknown", "1"}},
		CapabilityArgs: pod.CapabilityArgs,
	}
	if len(req.IPs) > 0 {
		ips := make([]string, 0, len(req.IPs))
		for _, ip := range req.IPs {
			if !ip.IsValid() {
				return nil, nil, fmt.Errorf("%w: invalid requested address", errdefs.ErrInvalidArgument)
			}
			ips = append(ips, ip.String())
		}
		rt.CapabilityArgs["ips"] = ips
	}
	if req.MAC != "" {
		rt.CapabilityArgs["mac"] = req.MAC
	}
	return list, rt, nil
}

func pluginTypesOf(list *libcni.NetworkConfigList) []string {
	out := make([]string, 0, len(list.Plugins))
	for _, p := range list.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}
