package cri

import (
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// GetContainerEvents streams container lifecycle events until the client
// goes away. Each carries the pod's status and the statuses of all its
// containers, newest first, as the kubelet's evented PLEG expects (a
// DELETED container is no longer among them).
func (s *RuntimeService) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream runtimeapi.RuntimeService_GetContainerEventsServer) error {
	ctx := stream.Context()
	for ev := range s.opts.Stats.Subscribe(ctx) {
		resp := &runtimeapi.ContainerEventResponse{
			ContainerId:        ev.ContainerID,
			ContainerEventType: criEventType(ev.Type),
			CreatedAt:          ev.Time.UnixNano(),
		}
		if sb, err := s.opts.Pods.Sandbox(ev.SandboxID); err == nil {
			if st, err := sandboxStatus(sb); err == nil {
				resp.PodSandboxStatus = st
			}
			if cs, err := s.podContainerStatuses(ctx, sb.ID); err == nil {
				resp.ContainersStatuses = cs
			}
		}
		if err := stream.Send(resp); err != nil {
			return fmt.Errorf("send container event: %w", err)
		}
	}
	return nil
}

func criEventType(t runtime.EventType) runtimeapi.ContainerEventType {
	switch t {
	case runtime.EventCreated:
		return runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT
	case runtime.EventStarted:
		return runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT
	case runtime.EventStopped:
		return runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT
	}
	return runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT
}
