package cri

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// ContainerStats reports a container's CPU, memory and writable layer use.
func (s *RuntimeService) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.opts.Containers.Container(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", req.GetContainerId(), err)
	}
	st, err := s.opts.Stats.ContainerStats(ctx, c.ID)
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.ID, err)
	}
	return &runtimeapi.ContainerStatsResponse{Stats: s.criContainerStats(c, st)}, nil
}

// ListContainerStats reports the stats of the running containers that
// match the filter; containers that are not running have none.
func (s *RuntimeService) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	stats, err := s.listContainerStats(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListContainerStatsResponse{Stats: stats}, nil
}

// StreamContainerStats sends the same list as ListContainerStats in pages.
func (s *RuntimeService) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream runtimeapi.RuntimeService_StreamContainerStatsServer) error {
	stats, err := s.listContainerStats(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	return sendPages(stats, func(page []*runtimeapi.ContainerStats) error {
		if err := stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: page}); err != nil {
			return fmt.Errorf("stream container stats: %w", err)
		}
		return nil
	})
}

func (s *RuntimeService) listContainerStats(ctx context.Context, f *runtimeapi.ContainerStatsFilter) ([]*runtimeapi.ContainerStats, error) {
	var out []*runtimeapi.ContainerStats
	for _, c := range s.opts.Containers.ListContainers() {
		if c.State != runtime.ContainerRunning || !containerStatsMatches(c, f) {
			continue
		}
		st, err := s.opts.Stats.ContainerStats(ctx, c.ID)
		if err != nil {
			if gone(err) {
				continue // exited or removed meanwhile
			}
			return nil, fmt.Errorf("list container stats: %w", err)
		}
		out = append(out, s.criContainerStats(c, st))
	}
	return out, nil
}

// gone reports whether a container or pod went away between the list and
// the read.
func gone(err error) bool {
	return errors.Is(err, errdefs.ErrNotFound) || errors.Is(err, errdefs.ErrFailedPrecondition)
}

func containerStatsMatches(c *runtime.Container, f *runtimeapi.ContainerStatsFilter) bool {
	if f == nil {
		return true
	}
	if f.GetId() != "" && !strings.HasPrefix(c.ID, f.GetId()) {
		return false
	}
	if f.GetPodSandboxId() != "" && !strings.HasPrefix(c.SandboxID, f.GetPodSandboxId()) {
		return false
	}
	return labelsMatch(c.Config.Labels, f.GetLabelSelector())
}

func (s *RuntimeService) criContainerStats(c *runtime.Container, st *runtime.ContainerStats) *runtimeapi.ContainerStats {
	ts := st.Timestamp.UnixNano()
	out := &runtimeapi.ContainerStats{
		Attributes: &runtimeapi.ContainerAttributes{
			Id:          c.ID,
			Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
			Labels:      nonNilMap(c.Config.Labels),
			Annotations: visibleAnnotations(c.Config.Annotations),
		},
		Cpu: &runtimeapi.CpuUsage{
			Timestamp:            ts,
			UsageCoreNanoSeconds: &runtimeapi.UInt64Value{Value: st.CPUUsage},
			UsageNanoCores:       &runtimeapi.UInt64Value{Value: s.cpuRates.rate(c.ID, st.Timestamp, st.CPUUsage)},
		},
		Memory: memoryUsage(ts, st.MemoryWorkingSet, st.MemoryUsage, st.MemoryRSS, st.PageFaults, st.MajorPageFaults, c.Config.Spec.Resources.MemoryLimit),
		WritableLayer: &runtimeapi.FilesystemUsage{
			Timestamp:  ts,
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: st.WritableLayerPath},
			UsedBytes:  &runtimeapi.UInt64Value{Value: st.WritableLayerBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: st.WritableLayerInodes},
		},
	}
	return out
}

func memoryUsage(ts int64, workingSet, usage, rss, faults, majorFaults uint64, limit int64) *runtimeapi.MemoryUsage {
	m := &runtimeapi.MemoryUsage{
		Timestamp:       ts,
		WorkingSetBytes: &runtimeapi.UInt64Value{Value: workingSet},
		UsageBytes:      &runtimeapi.UInt64Value{Value: usage},
		RssBytes:        &runtimeapi.UInt64Value{Value: rss},
		PageFaults:      &runtimeapi.UInt64Value{Value: faults},
		MajorPageFaults: &runtimeapi.UInt64Value{Value: majorFaults},
	}
	// Available is only meaningful under a limit, as in the kubelet's
	// cadvisor figures.
	if limit > 0 && uint64(limit) > workingSet {
		m.AvailableBytes = &runtimeapi.UInt64Value{Value: uint64(limit) - workingSet}
	}
	return m
}

// cpuRates derives usage_nano_cores from the cumulative CPU time, over a
// window of at least cpuRateWindow: every caller of the stats RPCs (the
// kubelet's summary API, its eviction manager, its metrics, crictl) moves
// the last reading, and containerd's "since the previous call" gives 0
// whenever two calls come closer together than the CPU time advances, as
// it does for an idle pod polled twice within a second. Within a window,
// callers get the rate of the last complete one; the first reading gives
// 0.
type cpuRates struct {
	mu   sync.Mutex
	last map[string]cpuWindow
}

// cpuRateWindow is the shortest interval a rate is measured over.
const cpuRateWindow = time.Second

type cpuWindow struct {
	// start opens the window being measured.
	start cpuSample
	rate  uint64
}

type cpuSample struct {
	at    time.Time
	usage uint64
}

func (r *cpuRates) rate(id string, at time.Time, usage uint64) uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]cpuWindow{}
	}
	w, ok := r.last[id]
	switch {
	case !ok || at.Before(w.start.at) || usage < w.start.usage:
		// First reading, or a counter that went back (a restarted
		// container reusing the ID): start over.
		r.last[id] = cpuWindow{start: cpuSample{at: at, usage: usage}}
		return 0
	case at.Sub(w.start.at) < cpuRateWindow:
		return w.rate
	}
	w.rate = uint64(float64(usage-w.start.usage) / float64(at.Sub(w.start.at).Nanoseconds()) * 1e9)
	w.start = cpuSample{at: at, usage: usage}
	r.last[id] = w
	return w.rate
}

// drop forgets a removed container's or pod's last sample.
func (r *cpuRates) drop(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.last, id)
}
