package daemon

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/berth-dev/berth/builder"
	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/engine/network"
)

// podNetwork adapts the CNI manager to what the CRI RuntimeService asks of
// a network; cri and cni do not know each other.
type podNetwork struct{ m *cni.Manager }

var _ cri.Network = podNetwork{}

func (n podNetwork) Ready(ctx context.Context) (bool, string) { return n.m.Ready(ctx) }

func (n podNetwork) Attach(ctx context.Context, p cri.PodNetwork) ([]string, error) {
	res, err := n.m.Attach(ctx, podArgs(p))
	if err != nil {
		return nil, err
	}
	var ips []string
	for _, a := range res.Addrs() {
		ips = append(ips, a.String())
	}
	return ips, nil
}

func (n podNetwork) Detach(ctx context.Context, p cri.PodNetwork) error {
	return n.m.Detach(ctx, podArgs(p))
}

func podArgs(p cri.PodNetwork) cni.PodArgs {
	a := cni.PodArgs{ID: p.ID, NetNS: p.NetNS, PodName: p.PodName, PodNamespace: p.PodNamespace, PodUID: p.PodUID}
	for _, pm := range p.PortMappings {
		a.PortMappings = append(a.PortMappings, cni.PortMapping{HostPort: pm.HostPort, ContainerPort: pm.ContainerPort, Protocol: pm.Protocol, HostIP: pm.HostIP})
	}
	return a
}

// buildNetwork adapts the standalone containers' networks to what bridge
// builds ask: a build's sandbox on the default bridge, as a container
// would be.
type buildNetwork struct{ m *network.Manager }

var _ builder.Network = buildNetwork{}

func (n buildNetwork) Attach(ctx context.Context, id, hostname, netns, hostsPath, resolvPath string, extraHosts []string) error {
	if err := n.m.Register(ctx, network.Container{ID: id, Hostname: hostname, Mode: network.NameBridge, ExtraHosts: extraHosts}); err != nil {
		return err
	}
	if _, err := n.m.Attach(ctx, network.AttachRequest{ID: id, NetNS: netns, HostsPath: hostsPath, ResolvConfPath: resolvPath}); err != nil {
		n.m.Unregister(context.WithoutCancel(ctx), id)
		return err
	}
	return nil
}

func (n buildNetwork) Release(ctx context.Context, id string) error { return n.m.Unregister(ctx, id) }

// shimName is the shim executable's name.
const shimName = "berth-shim"

// findShim returns the configured shim, else the berth-shim next to the
// running executable (how `make build` and packages install them), else
// the one in PATH. found is false when none exists: berthd still serves
// images, and creating a container then fails with the exec error.
func findShim(configured string) (path string, found bool) {
	if configured != "" {
		_, err := os.Stat(configured)
		return configured, err == nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), shimName)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
			return p, true
		}
	}
	if p, err := exec.LookPath(shimName); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, true
		}
	}
	return shimName, false
}
