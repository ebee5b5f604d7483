package cri

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// StopContainer sends the container's stop signal, waits up to timeout
// seconds and then kills it; a timeout of 0 kills at once (api.proto).
// Stopping an exited or unknown container succeeds: critest's idempotence
// specs require it of both, and the kubelet treats either as stopped.
func (s *RuntimeService) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("stop container %s: %w: negative timeout %d", req.GetContainerId(), errdefs.ErrInvalidArgument, req.GetTimeout())
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	defer s.nri.blockSync()()
	if err := s.opts.Containers.StopContainer(ctx, req.GetContainerId(), timeout); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("stop container %s: %w", req.GetContainerId(), err)
	}
	// The exit relay may be a moment behind: the stop reaches NRI plugins
	// before the RPC answers (once, whoever is first).
	if c, err := s.opts.Containers.Container(req.GetContainerId()); err == nil {
		s.nri.stopContainer(ctx, c.ID)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}
