package cri

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// ListPodSandbox lists the pods that match the filter (ID or ID prefix,
// state, labels).
func (s *RuntimeService) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	items, err := s.listSandboxes(req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxResponse{Items: items}, nil
}

// StreamPodSandboxes sends the same list as ListPodSandbox in pages.
func (s *RuntimeService) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream runtimeapi.RuntimeService_StreamPodSandboxesServer) error {
	items, err := s.listSandboxes(req.GetFilter())
	if err != nil {
		return err
	}
	return sendPages(items, func(page []*runtimeapi.PodSandbox) error {
		if err := stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: page}); err != nil {
			return fmt.Errorf("stream pod sandboxes: %w", err)
		}
		return nil
	})
}

// streamPage is how many items one message of a Stream* RPC carries.
const streamPage = 100

// sendPages calls send with consecutive pages of items; an empty list is
// sent as no message at all.
func sendPages[T any](items []T, send func([]T) error) error {
	for len(items) > 0 {
		n := min(len(items), streamPage)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func (s *RuntimeService) listSandboxes(f *runtimeapi.PodSandboxFilter) ([]*runtimeapi.PodSandbox, error) {
	var out []*runtimeapi.PodSandbox
	for _, sb := range s.opts.Pods.ListSandboxes() {
		if !sandboxMatches(sb, f) {
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id:             sb.ID,
			Metadata:       sandboxMetadata(sb),
			State:          sandboxState(sb.State),
			CreatedAt:      sb.CreatedAt.UnixNano(),
			Labels:         nonNilMap(sb.Config.Labels),
			Annotations:    visibleAnnotations(sb.Config.Annotations),
			RuntimeHandler: sb.Config.RuntimeHandler,
		})
	}
	return out, nil
}

func sandboxMatches(sb *runtime.Sandbox, f *runtimeapi.PodSandboxFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) {
		return false
	}
	if st := f.GetState(); st != nil && st.GetState() != sandboxState(sb.State) {
		return false
	}
	return labelsMatch(sb.Config.Labels, f.GetLabelSelector())
}

// labelsMatch reports whether labels contain every key=value of selector.
func labelsMatch(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
