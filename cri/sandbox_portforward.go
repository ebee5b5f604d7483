package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// PortForward returns the streaming URL of a port-forward session into a
// ready pod's network namespace.
func (s *RuntimeService) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("port forward to pod %s: %w", req.GetPodSandboxId(), err)
	}
	if sb.State != runtime.SandboxReady {
		return nil, fmt.Errorf("port forward to pod %s: %w: pod is not ready", sb.ID, errdefs.ErrFailedPrecondition)
	}
	if s.opts.Streams == nil {
		return nil, fmt.Errorf("port forward to pod %s: %w: no streaming server", sb.ID, errdefs.ErrNotImplemented)
	}
	// The token must carry the full ID: the session looks the pod up again.
	req = &runtimeapi.PortForwardRequest{PodSandboxId: sb.ID, Port: req.GetPort()}
	resp, err := s.opts.Streams.portForward(req)
	if err != nil {
		return nil, fmt.Errorf("port forward to pod %s: %w", sb.ID, err)
	}
	return resp, nil
}
