package cri

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// eventsRuntime serves a fixed list of events.
type eventsRuntime struct {
	*fakeRuntime
	events []runtime.Event
}

func (r eventsRuntime) Subscribe(ctx context.Context) <-chan runtime.Event {
	ch := make(chan runtime.Event, len(r.events))
	for _, e := range r.events {
		ch <- e
	}
	close(ch)
	return ch
}

// eventStream collects what GetContainerEvents sends.
type eventStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent []*runtimeapi.ContainerEventResponse
}

func (s *eventStream) Context() context.Context { return s.ctx }
func (s *eventStream) Send(r *runtimeapi.ContainerEventResponse) error {
	s.sent = append(s.sent, r)
	return nil
}

func TestGetContainerEvents(t *testing.T) {
	s, rt, _, _ := newTestService()
	pod, err := s.RunPodSandbox(t.Context(), podRequest("web", nil))
	if err != nil {
		t.Fatal(err)
	}
	rt.containers = []*runtime.Container{{ID: "c1", SandboxID: pod.PodSandboxId, State: runtime.ContainerRunning, Config: runtime.ContainerConfig{Name: "app"}}}
	at := time.Unix(100, 5)
	s.opts.Stats = eventsRuntime{fakeRuntime: rt, events: []runtime.Event{
		{ContainerID: "c1", SandboxID: pod.PodSandboxId, Type: runtime.EventStarted, Time: at},
		{ContainerID: "gone", SandboxID: "no-such-pod", Type: runtime.EventDeleted, Time: at},
	}}
	stream := &eventStream{ctx: t.Context()}
	if err := s.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream); err != nil {
		t.Fatal(err)
	}
	if len(stream.sent) != 2 {
		t.Fatalf("sent %d events, want 2", len(stream.sent))
	}
	e := stream.sent[0]
	if e.ContainerId != "c1" || e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT || e.CreatedAt != at.UnixNano() ||
		e.PodSandboxStatus.GetId() != pod.PodSandboxId || len(e.ContainersStatuses) != 1 || e.ContainersStatuses[0].GetMetadata().GetName() != "app" ||
		e.ContainersStatuses[0].GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("started event = %v", e)
	}
	// A container whose pod is gone is still reported, without statuses.
	if e := stream.sent[1]; e.ContainerEventType != runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT || e.PodSandboxStatus != nil {
		t.Errorf("deleted event = %v", e)
	}
}

// TestPodContainerStatusesNewestFirst: with EventedPLEG the kubelet reads
// PodSandboxStatus's container statuses in order and takes the first of a
// name as the latest.
func TestPodContainerStatusesNewestFirst(t *testing.T) {
	s, rt, _, _ := newTestService()
	pod, err := s.RunPodSandbox(t.Context(), podRequest("web", nil))
	if err != nil {
		t.Fatal(err)
	}
	for i, created := range []int64{10, 30, 20} {
		rt.containers = append(rt.containers, &runtime.Container{
			ID: fmt.Sprintf("c%d", i), SandboxID: pod.PodSandboxId, State: runtime.ContainerExited, CreatedAt: time.Unix(created, 0),
			Config: runtime.ContainerConfig{Name: "app", Attempt: uint32(i)},
		})
	}
	rt.containers = append(rt.containers, &runtime.Container{ID: "other", SandboxID: "another-pod", CreatedAt: time.Unix(40, 0)})
	st, err := s.PodSandboxStatus(t.Context(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pod.PodSandboxId})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range st.ContainersStatuses {
		ids = append(ids, c.Id)
	}
	if want := []string{"c1", "c2", "c0"}; !slices.Equal(ids, want) {
		t.Errorf("container statuses %v, want newest first %v", ids, want)
	}
	s.opts.Stats = eventsRuntime{fakeRuntime: rt, events: []runtime.Event{
		{ContainerID: "c1", SandboxID: pod.PodSandboxId, Type: runtime.EventStopped, Time: time.Unix(50, 0)},
	}}
	stream := &eventStream{ctx: t.Context()}
	if err := s.GetContainerEvents(&runtimeapi.GetEventsRequest{}, stream); err != nil {
		t.Fatal(err)
	}
	ids = nil
	for _, c := range stream.sent[0].ContainersStatuses {
		ids = append(ids, c.Id)
	}
	if want := []string{"c1", "c2", "c0"}; !slices.Equal(ids, want) {
		t.Errorf("event's container statuses %v, want newest first %v", ids, want)
	}
}
