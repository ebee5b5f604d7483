package cri

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// ExecSync runs a command in a running container and returns its output
// (each stream capped at 16 MiB by the runtime) and exit code. A timeout
// that expires is DeadlineExceeded (the runtime wraps
// context.DeadlineExceeded, which the interceptor maps), as the kubelet's
// probes expect.
func (s *RuntimeService) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec sync in container %s: %w: no command", req.GetContainerId(), errdefs.ErrInvalidArgument)
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	stdout, stderr, code, err := s.opts.Processes.ExecSync(ctx, req.GetContainerId(), req.GetCmd(), timeout)
	if err != nil {
		return nil, fmt.Errorf("exec sync in container %s: %w", req.GetContainerId(), err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: code}, nil
}

// Exec returns the streaming URL of an exec session in a running container.
func (s *RuntimeService) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if err := s.requireRunning(req.GetContainerId()); err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", req.GetContainerId(), err)
	}
	if s.opts.Streams == nil {
		return nil, fmt.Errorf("exec in container %s: %w: no streaming server", req.GetContainerId(), errdefs.ErrNotImplemented)
	}
	resp, err := s.opts.Streams.exec(req)
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", req.GetContainerId(), err)
	}
	return resp, nil
}

// Attach returns the streaming URL of an attach session to a running
// container's stdio.
func (s *RuntimeService) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if err := s.requireRunning(req.GetContainerId()); err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", req.GetContainerId(), err)
	}
	if s.opts.Streams == nil {
		return nil, fmt.Errorf("attach to container %s: %w: no streaming server", req.GetContainerId(), errdefs.ErrNotImplemented)
	}
	resp, err := s.opts.Streams.attach(req)
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", req.GetContainerId(), err)
	}
	return resp, nil
}

// requireRunning fails unless the container exists and runs: a session URL
// for anything else would only fail later, with a worse message.
func (s *RuntimeService) requireRunning(id string) error {
	c, err := s.opts.Containers.Container(id)
	if err != nil {
		return err
	}
	if c.State != runtime.ContainerRunning {
		return fmt.Errorf("%w: container is %s, not running", errdefs.ErrFailedPrecondition, c.State)
	}
	return nil
}
