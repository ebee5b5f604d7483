package cri

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// StopPodSandbox kills the pod's containers (the kubelet has already
// stopped them with their grace periods; whatever still runs is killed, as
// containerd does), tells NRI plugins, detaches the network (CNI DEL) and
// stops the sandbox.
// The netns stays until RemovePodSandbox. Stopping a stopped or unknown pod
// succeeds, as api.proto asks.
func (s *RuntimeService) StopPodSandbox(ctx context.Context, req *runtimeapi.StopPodSandboxRequest) (*runtimeapi.StopPodSandboxResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if errors.Is(err, errdefs.ErrNotFound) {
		return &runtimeapi.StopPodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stop pod sandbox %s: %w", req.GetPodSandboxId(), err)
	}
	unlock := s.pods.lock(sb.ID)
	defer unlock()
	defer s.nri.blockSync()()
	for _, c := range s.opts.Containers.ListContainers() {
		if c.SandboxID != sb.ID {
			continue
		}
		if err := s.opts.Containers.StopContainer(ctx, c.ID, 0); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			return nil, fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
		}
		s.nri.stopContainer(ctx, c.ID)
	}
	// NRI plugins hear of the stop with the containers stopped and the
	// pod still whole (its network attached, its status readable), once.
	s.nri.stopPodSandbox(ctx, sb)
	if err := s.detach(ctx, sb); err != nil {
		return nil, fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
	}
	if err := s.opts.Pods.StopSandbox(ctx, sb.ID, 0); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return nil, fmt.Errorf("stop pod sandbox %s: %w", sb.ID, err)
	}
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

// detach runs CNI DEL for the pod with the port mappings it was attached
// with, unless one already succeeded: a stop that failed, or never came,
// leaves it to the remove (CNI DEL is idempotent, so running it twice is
// only slower).
func (s *RuntimeService) detach(ctx context.Context, sb *runtime.Sandbox) error {
	if sb.NetNSPath == "" || s.opts.Network == nil {
		return nil
	}
	if _, done := s.detached.Load(sb.ID); done {
		return nil
	}
	var cfg runtimeapi.PodSandboxConfig
	if err := readRecord(sb.Config.Annotations, annPodConfig, &cfg); err != nil {
		return err
	}
	if err := s.opts.Network.Detach(ctx, podNetwork(sb.ID, sb.NetNSPath, &cfg)); err != nil {
		return fmt.Errorf("detach network: %w", err)
	}
	s.detached.Store(sb.ID, true)
	return nil
}
