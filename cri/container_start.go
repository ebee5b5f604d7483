package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer starts a created container's process.
func (s *RuntimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	if err := s.opts.Containers.StartContainer(ctx, req.GetContainerId()); err != nil {
		return nil, fmt.Errorf("start container %s: %w", req.GetContainerId(), err)
	}
	return &runtimeapi.StartContainerResponse{}, nil
}
