package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources changes a container's cgroup limits.
func (s *RuntimeService) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	if req.GetLinux() == nil {
		return nil, fmt.Errorf("update container %s: %w: no linux resources given", req.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	id, res := req.GetContainerId(), resourcesFromCRI(req.GetLinux())
	if s.nri != nil {
		// NRI plugins may change the limits before they apply.
		defer s.nri.blockSync()()
		c, err := s.opts.Containers.Container(id)
		if err != nil {
			return nil, fmt.Errorf("update container %s: %w", id, err)
		}
		id = c.ID
		if res, err = s.nri.updateContainer(ctx, c, res); err != nil {
			return nil, fmt.Errorf("update container %s: %w", id, err)
		}
	}
	if err := s.opts.Processes.UpdateContainerResources(ctx, id, res); err != nil {
		return nil, fmt.Errorf("update container %s: %w", id, err)
	}
	s.nri.postUpdateContainer(ctx, id)
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// ReopenContainerLog makes the container's shim reopen its log file after
// the kubelet rotated it.
func (s *RuntimeService) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	if err := s.opts.Processes.ReopenContainerLog(ctx, req.GetContainerId()); err != nil {
		return nil, fmt.Errorf("reopen log of container %s: %w", req.GetContainerId(), err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
