package cni

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
)

// Result is what a pod got from its network: the addresses on its
// interface, IPv4 first (the kubelet takes the first as the pod IP).
type Result struct {
	// Network is the name of the network config the pod is attached to.
	Network string
	// Interface is the pod-side interface (eth0).
	Interface string
	// MAC is the interface's hardware address, if the plugin reported it.
	MAC string
	// IPs are the interface's addresses with their gateways.
	IPs []IPConfig
	// DNS is what the plugins suggest for the pod's resolv.conf (often
	// empty: the kubelet's DNS config wins).
	DNS DNS
}

// IPConfig is one address of the pod's interface.
type IPConfig struct {
	// Address is the IP with its prefix length (10.88.0.5/16).
	Address netip.Prefix
	// Gateway is the default gateway for this family; invalid if none.
	Gateway netip.Addr
}

// Addrs returns the pod's IPs without prefix lengths, IPv4 first.
func (r Result) Addrs() []netip.Addr {
	out := make([]netip.Addr, 0, len(r.IPs))
	for _, ip := range r.IPs {
		out = append(out, ip.Address.Addr())
	}
	return out
}

// decodeResult turns a plugin's JSON result, in any CNI version, into a
// Result for the interface ifName (used for cached results and fuzzing).
func decodeResult(raw []byte, ifName string) (Result, error) {
	res, err := create.CreateFromBytes(raw)
	if err != nil {
		return Result{}, fmt.Errorf("decode cni result: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	return resultFromCNI(res, ifName)
}

// resultFromCNI keeps the addresses on the pod's interface: a bridge
// result also lists the bridge and the host-side veth, whose addresses
// (the gateway's) are not the pod's. Addresses that name no interface are
// kept (older plugins and results converted from 0.2.0 do not say).
func resultFromCNI(res types.Result, ifName string) (Result, error) {
	if res == nil {
		return Result{}, fmt.Errorf("cni result: %w: empty", errdefs.ErrInvalidArgument)
	}
	r100, err := convertResult(res)
	if err != nil {
		return Result{}, fmt.Errorf("convert cni result: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	out := Result{
		Interface: ifName,
		DNS: DNS{
			Servers:  slices.Clone(r100.DNS.Nameservers),
			Searches: slices.Clone(r100.DNS.Search),
			Options:  slices.Clone(r100.DNS.Options),
		},
	}
	podIface := -1
	for i, iface := range r100.Interfaces {
		// Sandbox is set only for interfaces inside the container.
		if iface != nil && iface.Name == ifName && iface.Sandbox != "" {
			podIface = i
			out.MAC = iface.Mac
			break
		}
	}
	for _, ip := range r100.IPs {
		if ip == nil {
			continue
		}
		if ip.Interface != nil && *ip.Interface != podIface {
			continue
		}
		addr, ok := netip.AddrFromSlice(ip.Address.IP)
		if !ok {
			return Result{}, fmt.Errorf("cni result: %w: address %v is not an IP", errdefs.ErrInvalidArgument, ip.Address.IP)
		}
		addr = addr.Unmap()
		ones, bits := ip.Address.Mask.Size()
		if bits == 0 {
			// A mask that is not a prefix (or missing): a host route.
			ones = addr.BitLen()
		} else if bits != addr.BitLen() {
			return Result{}, fmt.Errorf("cni result: %w: mask of %s has %d bits", errdefs.ErrInvalidArgument, addr, bits)
		}
		ipc := IPConfig{Address: netip.PrefixFrom(addr, ones)}
		if len(ip.Gateway) > 0 {
			gw, ok := netip.AddrFromSlice(ip.Gateway)
			if !ok {
				return Result{}, fmt.Errorf("cni result: %w: gateway %v is not an IP", errdefs.ErrInvalidArgument, ip.Gateway)
			}
			ipc.Gateway = gw.Unmap()
		}
		out.IPs = append(out.IPs, ipc)
	}
	// Stable: keeps the plugin's order within a family.
	slices.SortStableFunc(out.IPs, func(a, b IPConfig) int {
		return boolInt(!a.Address.Addr().Is4()) - boolInt(!b.Address.Addr().Is4())
	})
	return out, nil
}

// convertResult converts to the 1.0.0 result type. libcni's converters
// dereference nil entries ("interfaces":[null] in a 0.3.x/0.4.0 result
// panics, found by FuzzDecodeResult), and a plugin's output must not bring
// berthd down.
func convertResult(res types.Result) (_ *types100.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed result: %v", p)
		}
	}()
	return types100.NewResultFromResult(res)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
