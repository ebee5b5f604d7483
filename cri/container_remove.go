package cri

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveContainer kills the container if it runs, removes it and its
// snapshots. Removing an unknown container succeeds (api.proto).
func (s *RuntimeService) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	defer s.nri.blockSync()()
	if err := s.removeContainer(ctx, req.GetContainerId()); err != nil {
		return nil, err
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

// removeContainer removes the container, tells NRI plugins, then removes
// its rootfs snapshot and its image volumes' snapshots: the runtime
// unmounts them first. The caller blocks NRI plugin synchronization (it
// is not reentrant).
func (s *RuntimeService) removeContainer(ctx context.Context, id string) error {
	c, err := s.opts.Containers.Container(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove container %s: %w", id, err)
	}
	var cfg runtimeapi.ContainerConfig
	if err := readRecord(c.Config.Annotations, annContainerConfig, &cfg); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	if err := s.opts.Containers.RemoveContainer(ctx, c.ID); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	s.nri.removeContainer(ctx, c)
	s.cpuRates.drop(c.ID)
	var errs []error
	errs = append(errs, s.opts.Images.RemoveSnapshot(ctx, c.ID))
	for i, m := range cfg.GetMounts() {
		if m.GetImage().GetImage() != "" {
			errs = append(errs, s.opts.Images.RemoveSnapshot(ctx, imageVolumeID(c.ID, i)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove container %s: %w", c.ID, err)
	}
	return nil
}
