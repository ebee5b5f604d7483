package cri

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupDriverSystemd is runtime.CgroupDriverSystemd's value.
const cgroupDriverSystemd = "systemd"

// RuntimeConfig reports the cgroup driver the runtime uses, so that the
// kubelet picks the same one.
func (s *RuntimeService) RuntimeConfig(context.Context, *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.opts.CgroupDriver == cgroupDriverSystemd {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig accepts the node's pod CIDR and keeps it. CNI configs
// carry their own ranges, so nothing else changes; a verbose Status shows
// it.
func (s *RuntimeService) UpdateRuntimeConfig(_ context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr != "" {
		// The kubelet sends a comma-separated list for dual stack.
		for _, c := range strings.Split(cidr, ",") {
			if _, err := netip.ParsePrefix(strings.TrimSpace(c)); err != nil {
				return nil, fmt.Errorf("update runtime config: %w: pod cidr %q: %w", errdefs.ErrInvalidArgument, c, err)
			}
		}
	}
	s.mu.Lock()
	s.podCIDR = cidr
	s.mu.Unlock()
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

func (s *RuntimeService) podCIDRValue() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.podCIDR
}
