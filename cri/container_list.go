package cri

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// ListContainers lists the containers that match the filter (ID or prefix,
// state, pod ID or prefix, labels).
func (s *RuntimeService) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(ctx, req.GetFilter())}, nil
}

// StreamContainers sends the same list as ListContainers in pages, so that
// no message reaches the gRPC size limit however many containers there are.
func (s *RuntimeService) StreamContainers(req *runtimeapi.StreamContainersRequest, stream runtimeapi.RuntimeService_StreamContainersServer) error {
	return sendPages(s.listContainers(stream.Context(), req.GetFilter()), func(page []*runtimeapi.Container) error {
		if err := stream.Send(&runtimeapi.StreamContainersResponse{Containers: page}); err != nil {
			return fmt.Errorf("stream containers: %w", err)
		}
		return nil
	})
}

func (s *RuntimeService) listContainers(ctx context.Context, f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	var out []*runtimeapi.Container
	for _, c := range s.opts.Containers.ListContainers() {
		if !containerMatches(c, f) {
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id:           c.ID,
			PodSandboxId: c.SandboxID,
			Metadata:     &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Image:        &runtimeapi.ImageSpec{Image: s.imageName(ctx, c)},
			ImageRef:     c.Config.ImageRef,
			ImageId:      c.Config.ImageID,
			State:        containerState(c.State),
			CreatedAt:    unixNano(c.CreatedAt),
			Labels:       nonNilMap(c.Config.Labels),
			Annotations:  visibleAnnotations(c.Config.Annotations),
		})
	}
	return out
}

func containerMatches(c *runtime.Container, f *runtimeapi.ContainerFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
		return false
	}
	if f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) {
		return false
	}
	if st := f.GetState(); st != nil && st.GetState() != containerState(c.State) {
		return false
	}
	return labelsMatch(c.Config.Labels, f.GetLabelSelector())
}
