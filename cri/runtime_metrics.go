package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The CRI metrics RPCs serve cAdvisor's container_* metrics (about fifty:
// CFS throttling, memory detail, threads, sockets, file descriptors,
// network packets, ...), most of which the runtime does not read yet. An
// empty list would claim there are none, and reporting made-up values for
// the rest would be worse, so they answer Unimplemented and the kubelet
// keeps using cAdvisor (its default).
const metricsMissing = "berth does not serve CRI metrics yet (the kubelet's cAdvisor provides them)"

// ListMetricDescriptors is Unimplemented; see metricsMissing.
func (s *RuntimeService) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return nil, fmt.Errorf("list metric descriptors: %w: %s", errdefs.ErrNotImplemented, metricsMissing)
}

// ListPodSandboxMetrics is Unimplemented; see metricsMissing.
func (s *RuntimeService) ListPodSandboxMetrics(context.Context, *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return nil, fmt.Errorf("list pod sandbox metrics: %w: %s", errdefs.ErrNotImplemented, metricsMissing)
}

// StreamPodSandboxMetrics is Unimplemented; see metricsMissing.
func (s *RuntimeService) StreamPodSandboxMetrics(*runtimeapi.StreamPodSandboxMetricsRequest, runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	return fmt.Errorf("stream pod sandbox metrics: %w: %s", errdefs.ErrNotImplemented, metricsMissing)
}
