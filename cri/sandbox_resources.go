package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources is how the kubelet tells the runtime about a
// pod's new resources after it has resized the pod's cgroup itself; the
// runtime has nothing to change. As containerd does, it tells NRI plugins
// (which may refuse), then tells them it is done.
func (s *RuntimeService) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("update pod sandbox resources %s: %w", req.GetPodSandboxId(), err)
	}
	if err := s.nri.updatePodSandbox(ctx, sb, req.GetOverhead(), req.GetResources()); err != nil {
		return nil, fmt.Errorf("update pod sandbox resources %s: %w", sb.ID, err)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
