package cri

import (
	"context"
	"fmt"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// PodSandboxStats reports a pod's CPU, memory, network and process figures
// with its containers'.
func (s *RuntimeService) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("stats of pod %s: %w", req.GetPodSandboxId(), err)
	}
	st, err := s.opts.Stats.SandboxStats(ctx, sb.ID)
	if err != nil {
		return nil, fmt.Errorf("stats of pod %s: %w", sb.ID, err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.criSandboxStats(sb, st)}, nil
}

// ListPodSandboxStats reports the stats of the ready pods that match the
// filter.
func (s *RuntimeService) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	stats, err := s.listSandboxStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: stats}, nil
}

// StreamPodSandboxStats sends the same list as ListPodSandboxStats in pages.
func (s *RuntimeService) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxStatsServer) error {
	stats, err := s.listSandboxStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendPages(stats, func(page []*runtimeapi.PodSandboxStats) error {
		if err := stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: page}); err != nil {
			return fmt.Errorf("stream pod sandbox stats: %w", err)
		}
		return nil
	})
}

func (s *RuntimeService) listSandboxStats(ctx context.Context, f *runtimeapi.PodSandboxStatsFilter) ([]*runtimeapi.PodSandboxStats, error) {
	var out []*runtimeapi.PodSandboxStats
	for _, sb := range s.opts.Pods.ListSandboxes() {
		if sb.State != runtime.SandboxReady {
			continue
		}
		if f != nil && (f.GetId() != "" && !strings.HasPrefix(sb.ID, f.GetId()) || !labelsMatch(sb.Config.Labels, f.GetLabelSelector())) {
			continue
		}
		st, err := s.opts.Stats.SandboxStats(ctx, sb.ID)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, fmt.Errorf("list pod sandbox stats: %w", err)
		}
		out = append(out, s.criSandboxStats(sb, st))
	}
	return out, nil
}

func (s *RuntimeService) criSandboxStats(sb *runtime.Sandbox, st *runtime.SandboxStats) *runtimeapi.PodSandboxStats {
	ts := st.Timestamp.UnixNano()
	lnx := &runtimeapi.LinuxPodSandboxStats{
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.CPUUsage},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: s.cpuRates.rate(sb.ID, st.Timestamp, st.CPUUsage)},
		},
		Memory:  memoryUsage(ts, st.MemoryWorkingSet, st.MemoryUsage, st.MemoryRSS, st.PageFaults, st.MajorPageFaults, 0),
		Process: &runtimeapi.ProcessUsage{Timestamp: ts, ProcessCount: &runtimeapi.UInt64Value{Value: st.Pids}},
	}
	if st.Network != nil {
		nw := &runtimeapi.NetworkUsage{Timestamp: ts}
		for _, i := range st.Network {
			iu := &runtimeapi.NetworkInterfaceUsage{
				Name:     i.Name,
				RxBytes:  &runtimeapi.UInt64Value{Value: i.RxBytes},
				RxErrors: &runtimeapi.UInt64Value{Value: i.RxErrors},
				TxBytes:  &runtimeapi.UInt64Value{Value: i.TxBytes},
				TxErrors: &runtimeapi.UInt64Value{Value: i.TxErrors},
			}
			nw.Interfaces = append(nw.Interfaces, iu)
			// CNI names the pod's interface eth0.
			if i.Name == "eth0" || nw.DefaultInterface == nil {
				nw.DefaultInterface = iu
			}
		}
		lnx.Network = nw
	}
	for i := range st.Containers {
		cs := &st.Containers[i]
		c, err := s.opts.Containers.Container(cs.ID)
		if err != nil {
			continue // removed meanwhile
		}
		lnx.Containers = append(lnx.Containers, s.criContainerStats(c, cs))
	}
	return &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id:          sb.ID,
			Metadata:    sandboxMetadata(sb),
			Labels:      nonNilMap(sb.Config.Labels),
			Annotations: visibleAnnotations(sb.Config.Annotations),
		},
		Linux: lnx,
	}
}
