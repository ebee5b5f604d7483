package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointContainer is not supported: it needs CRIU, which Berth does not
// drive.
func (s *RuntimeService) CheckpointContainer(_ context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	return nil, fmt.Errorf("checkpoint container %s: %w: berth does not support checkpointing (no CRIU integration)", req.GetContainerId(), errdefs.ErrNotImplemented)
}

// CheckpointPod is not supported, like CheckpointContainer.
func (s *RuntimeService) CheckpointPod(_ context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	return nil, fmt.Errorf("checkpoint pod %s: %w: berth does not support checkpointing (no CRIU integration)", req.GetPodSandboxId(), errdefs.ErrNotImplemented)
}

// RestorePod is not supported, like CheckpointContainer.
func (s *RuntimeService) RestorePod(context.Context, *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	return nil, fmt.Errorf("restore pod: %w: berth does not support checkpointing (no CRIU integration)", errdefs.ErrNotImplemented)
}
