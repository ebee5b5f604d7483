package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdatePodSandboxResources is how the kubelet tells the runtime about a
// pod's new resources after it has resized the pod's cgroup itself; the
// runtime has nothing to change (containerd only forwards it to NRI, which
// Berth does not have). It checks that the pod exists.
func (s *RuntimeService) UpdatePodSandboxResources(_ context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	if _, err := s.opts.Pods.Sandbox(req.GetPodSandboxId()); err != nil {
		return nil, fmt.Errorf("update pod sandbox resources %s: %w", req.GetPodSandboxId(), err)
	}
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}
