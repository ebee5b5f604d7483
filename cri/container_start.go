package cri

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StartContainer starts a created container's process.
// NRI plugins hear of the start before it happens, and may refuse it.
func (s *RuntimeService) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	id := req.GetContainerId()
	if s.nri != nil {
		defer s.nri.blockSync()()
		c, err := s.opts.Containers.Container(id)
		if err != nil {
			return nil, fmt.Errorf("start container %s: %w", id, err)
		}
		id = c.ID
		if err := s.nri.startContainer(ctx, c); err != nil {
			s.nri.stopContainer(context.WithoutCancel(ctx), id)
			return nil, fmt.Errorf("start container %s: %w", id, err)
		}
	}
	if err := s.opts.Containers.StartContainer(ctx, id); err != nil {
		s.nri.stopContainer(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("start container %s: %w", id, err)
	}
	s.nri.postStartContainer(ctx, id)
	return &runtimeapi.StartContainerResponse{}, nil
}
