package cri

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemovePodSandbox removes the pod's containers (with their snapshots),
// detaches the network unless a stop did (it may have been skipped or
// failed) and
// removes the sandbox with its namespaces and files. Removing an unknown
// pod succeeds.
func (s *RuntimeService) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", req.GetPodSandboxId(), err)
	}
	unlock := s.pods.lock(sb.ID)
	defer unlock()
	defer s.nri.blockSync()()
	for _, c := range s.opts.Containers.ListContainers() {
		if c.SandboxID != sb.ID {
			continue
		}
		if err := s.removeContainer(ctx, c.ID); err != nil {
			return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
		}
	}
	if err := s.detach(ctx, sb); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	if err := s.opts.Pods.RemoveSandbox(ctx, sb.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID, err)
	}
	s.nri.removePodSandbox(ctx, sb)
	s.cpuRates.drop(sb.ID)
	s.detached.Delete(sb.ID)
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
