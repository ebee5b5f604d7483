package cri

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// The CRI metrics RPCs serve cAdvisor's container_* metrics, so that a
// kubelet taking pod and container stats from the runtime
// (PodAndContainerStatsFromCRI) keeps the names and labels dashboards
// use. Every value is read when asked (cgroup, /proc, statfs, the pod's
// /proc/net/dev); a metric the runtime cannot measure is not described.
//
// CRI carries integers only (UInt64Value) and the kubelet exports them as
// they are, so *_seconds_* metrics are whole seconds, truncated, as in
// CRI-O and containerd.

// baseLabelKeys label every metric, in this order: the pod's name and
// namespace, the container's name (empty for pod-level metrics), the
// container's ID (the pod's for pod-level ones) and its image.
var baseLabelKeys = []string{"pod", "namespace", "container", "id", "image"}

// sample is one value of a metric with the labels after the base ones.
type sample struct {
	value  uint64
	labels []string
}

// containerMetric describes one metric and reads its samples from a
// container's figures.
type containerMetric struct {
	name, help string
	kind       runtimeapi.MetricType
	labels     []string
	values     func(m *runtime.ContainerMetrics) []sample
}

// podMetric reads one metric's samples from a pod's figures.
type podMetric struct {
	name, help string
	kind       runtimeapi.MetricType
	labels     []string
	values     func(m *runtime.SandboxMetrics) []sample
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

func one(v uint64) []sample { return []sample{{value: v}} }

func seconds(ns uint64) uint64 { return ns / uint64(time.Second) }

func unixSeconds(t time.Time) []sample {
	if t.IsZero() {
		return nil
	}
	return one(uint64(t.Unix()))
}

// blockIO sums a device's entries for one operation, per device.
func blockIO(m *runtime.ContainerMetrics, op string, ops bool) []sample {
	var out []sample
	idx := map[string]int{}
	for _, b := range m.BlockIO {
		if !strings.EqualFold(b.Op, op) {
			continue
		}
		v := b.Bytes
		if ops {
			v = b.Ops
		}
		i, ok := idx[b.Device]
		if !ok {
			i = len(out)
			idx[b.Device] = i
			out = append(out, sample{labels: []string{b.Device}})
		}
		out[i].value += v
	}
	return out
}

var containerMetrics = []containerMetric{
	// CPU.
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, []string{"cpu"},
		func(m *runtime.ContainerMetrics) []sample {
			return []sample{{value: seconds(m.CPU.Usage), labels: []string{"total"}}}
		}},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(seconds(m.CPU.User)) }},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(seconds(m.CPU.System)) }},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.CPU.Periods) }},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.CPU.ThrottledPeriods) }},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(seconds(m.CPU.ThrottledTime)) }},

	// Memory.
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Cache) }},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.RSS) }},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Kernel) }},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.MappedFile) }},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Swap) }},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Failcnt) }},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Usage) }},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.MaxUsage) }},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.WorkingSet) }},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures.", counter, []string{"failure_type", "scope"},
		func(m *runtime.ContainerMetrics) []sample {
			return []sample{
				{m.Memory.OwnPageFaults, []string{"pgfault", "container"}},
				{m.Memory.OwnMajorPageFaults, []string{"pgmajfault", "container"}},
				{m.Memory.PageFaults, []string{"pgfault", "hierarchy"}},
				{m.Memory.MajorPageFaults, []string{"pgmajfault", "hierarchy"}},
			}
		}},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.OOMKills) }},
	{"container_hugetlb_usage_bytes", "Current hugepage usage in bytes.", gauge, []string{"pagesize"},
		func(m *runtime.ContainerMetrics) []sample {
			var out []sample
			for _, h := range m.Hugetlb {
				out = append(out, sample{h.Usage, []string{h.PageSize}})
			}
			return out
		}},
	{"container_hugetlb_max_usage_bytes", "Maximum hugepage usage recorded in bytes.", gauge, []string{"pagesize"},
		func(m *runtime.ContainerMetrics) []sample {
			var out []sample
			for _, h := range m.Hugetlb {
				out = append(out, sample{h.MaxUsage, []string{h.PageSize}})
			}
			return out
		}},

	// Writable layer and its filesystem.
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container on this filesystem.", gauge, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return fsSample(m, m.Filesystem.UsedBytes) }},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on this filesystem.", gauge, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return fsSample(m, m.Filesystem.CapacityBytes) }},
	{"container_fs_inodes_free", "Number of available Inodes.", gauge, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return fsSample(m, m.Filesystem.InodesFree) }},
	{"container_fs_inodes_total", "Number of Inodes.", gauge, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return fsSample(m, m.Filesystem.Inodes) }},

	// Block I/O of the container's cgroup.
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return blockIO(m, "read", false) }},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return blockIO(m, "write", false) }},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return blockIO(m, "read", true) }},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, []string{"device"},
		func(m *runtime.ContainerMetrics) []sample { return blockIO(m, "write", true) }},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, []string{"device", "major", "minor", "operation"},
		func(m *runtime.ContainerMetrics) []sample {
			var out []sample
			for _, b := range m.BlockIO {
				out = append(out, sample{b.Bytes, []string{
					b.Device, strconv.FormatUint(b.Major, 10), strconv.FormatUint(b.Minor, 10), b.Op,
				}})
			}
			return out
		}},

	// Processes.
	{"container_processes", "Number of processes running inside the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Processes.Processes) }},
	{"container_threads", "Number of threads running inside the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Processes.Threads) }},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 if unlimited.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Processes.ThreadsMax) }},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Processes.FileDescriptors) }},
	{"container_sockets", "Number of open sockets for the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Processes.Sockets) }},

	// Settings read back from the cgroup.
	{"container_spec_cpu_period", "CPU period of the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.CPU.Period) }},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample {
			if m.CPU.Quota == 0 {
				return nil // unlimited: no series, as in cAdvisor
			}
			return one(m.CPU.Quota)
		}},
	{"container_spec_memory_reservation_limit_bytes", "Memory reservation limit for the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Reservation) }},
	{"container_ulimits_soft", "Soft ulimit values for the container root process. Unlimited if -1, except priority and nice", gauge, []string{"ulimit"},
		func(m *runtime.ContainerMetrics) []sample {
			var out []sample
			for _, u := range m.Ulimits {
				out = append(out, sample{u.Soft, []string{u.Name}})
			}
			return out
		}},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.CPU.Shares) }},
	{"container_spec_memory_limit_bytes", "Memory limit for the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.Limit) }},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return one(m.Memory.SwapLimit) }},

	// Pressure stall information (cgroup v2).
	pressureMetric("container_pressure_cpu_waiting_seconds_total", "Total time duration tasks in the container have waited due to CPU congestion.",
		func(p *runtime.Pressure) time.Duration { return p.CPUSome }),
	pressureMetric("container_pressure_cpu_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to CPU congestion.",
		func(p *runtime.Pressure) time.Duration { return p.CPUFull }),
	pressureMetric("container_pressure_memory_waiting_seconds_total", "Total time duration tasks in the container have waited due to memory congestion.",
		func(p *runtime.Pressure) time.Duration { return p.MemorySome }),
	pressureMetric("container_pressure_memory_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to memory congestion.",
		func(p *runtime.Pressure) time.Duration { return p.MemoryFull }),
	pressureMetric("container_pressure_io_waiting_seconds_total", "Total time duration tasks in the container have waited due to IO congestion.",
		func(p *runtime.Pressure) time.Duration { return p.IOSome }),
	pressureMetric("container_pressure_io_stalled_seconds_total", "Total time duration no tasks in the container could make progress due to IO congestion.",
		func(p *runtime.Pressure) time.Duration { return p.IOFull }),

	// Times.
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return unixSeconds(m.StartedAt) }},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, nil,
		func(m *runtime.ContainerMetrics) []sample { return unixSeconds(m.Timestamp) }},
}

// pressureMetric serves one pressure total where the kernel keeps them.
func pressureMetric(name, help string, v func(p *runtime.Pressure) time.Duration) containerMetric {
	return containerMetric{name, help, counter, nil, func(m *runtime.ContainerMetrics) []sample {
		if m.Pressure == nil {
			return nil
		}
		return one(seconds(uint64(v(m.Pressure))))
	}}
}

func fsSample(m *runtime.ContainerMetrics, v uint64) []sample {
	if m.Filesystem.Device == "" {
		// No writable layer measured (a rootfs that is not an overlay).
		return nil
	}
	return []sample{{v, []string{m.Filesystem.Device}}}
}

// interfaceMetric reads one counter of every pod interface.
func interfaceMetric(name, help string, v func(i runtime.InterfaceStats) uint64) podMetric {
	return podMetric{name, help, counter, []string{"interface"}, func(m *runtime.SandboxMetrics) []sample {
		var out []sample
		for _, i := range m.Network {
			out = append(out, sample{v(i), []string{i.Name}})
		}
		return out
	}}
}

// podMetrics are measured for the pod as a whole: its network namespace.
var podMetrics = []podMetric{
	interfaceMetric("container_network_receive_bytes_total", "Cumulative count of bytes received.",
		func(i runtime.InterfaceStats) uint64 { return i.RxBytes }),
	interfaceMetric("container_network_receive_packets_total", "Cumulative count of packets received.",
		func(i runtime.InterfaceStats) uint64 { return i.RxPackets }),
	interfaceMetric("container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.",
		func(i runtime.InterfaceStats) uint64 { return i.RxDropped }),
	interfaceMetric("container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.",
		func(i runtime.InterfaceStats) uint64 { return i.RxErrors }),
	interfaceMetric("container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.",
		func(i runtime.InterfaceStats) uint64 { return i.TxBytes }),
	interfaceMetric("container_network_transmit_packets_total", "Cumulative count of packets transmitted.",
		func(i runtime.InterfaceStats) uint64 { return i.TxPackets }),
	interfaceMetric("container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.",
		func(i runtime.InterfaceStats) uint64 { return i.TxDropped }),
	interfaceMetric("container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.",
		func(i runtime.InterfaceStats) uint64 { return i.TxErrors }),
}

func labelKeys(extra []string) []string {
	return append(append([]string(nil), baseLabelKeys...), extra...)
}

// metricDescriptors lists every metric ListPodSandboxMetrics may return.
func metricDescriptors() []*runtimeapi.MetricDescriptor {
	var out []*runtimeapi.MetricDescriptor
	for _, d := range containerMetrics {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: labelKeys(d.labels)})
	}
	for _, d := range podMetrics {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: labelKeys(d.labels)})
	}
	return out
}

// ListMetricDescriptors describes the metrics ListPodSandboxMetrics
// returns.
func (s *RuntimeService) ListMetricDescriptors(context.Context, *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: metricDescriptors()}, nil
}

// ListPodSandboxMetrics reads the metrics of every ready pod and of its
// running containers.
func (s *RuntimeService) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	out, err := s.listPodSandboxMetrics(ctx)
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: out}, nil
}

// StreamPodSandboxMetrics sends the same list as ListPodSandboxMetrics in
// pages.
func (s *RuntimeService) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream runtimeapi.RuntimeService_StreamPodSandboxMetricsServer) error {
	out, err := s.listPodSandboxMetrics(stream.Context())
	if err != nil {
		return err
	}
	return sendPages(out, func(page []*runtimeapi.PodSandboxMetrics) error {
		if err := stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: page}); err != nil {
			return fmt.Errorf("stream pod sandbox metrics: %w", err)
		}
		return nil
	})
}

func (s *RuntimeService) listPodSandboxMetrics(ctx context.Context) ([]*runtimeapi.PodSandboxMetrics, error) {
	var out []*runtimeapi.PodSandboxMetrics
	for _, sb := range s.opts.Pods.ListSandboxes() {
		if sb.State != runtime.SandboxReady {
			continue
		}
		m, err := s.opts.Stats.SandboxMetrics(ctx, sb.ID)
		if err != nil {
			if gone(err) {
				continue
			}
			return nil, fmt.Errorf("list pod sandbox metrics: %w", err)
		}
		out = append(out, s.criSandboxMetrics(ctx, sb, m))
	}
	return out, nil
}

func (s *RuntimeService) criSandboxMetrics(ctx context.Context, sb *runtime.Sandbox, m *runtime.SandboxMetrics) *runtimeapi.PodSandboxMetrics {
	pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: sb.ID}
	ts := m.Timestamp.UnixNano()
	base := []string{sb.Config.Name, sb.Config.Namespace, "", sb.ID, ""}
	for _, d := range podMetrics {
		pm.Metrics = append(pm.Metrics, criMetrics(d.name, d.kind, ts, base, d.values(m))...)
	}
	for i := range m.Containers {
		cm := &m.Containers[i]
		c, err := s.opts.Containers.Container(cm.ID)
		if err != nil {
			continue // removed meanwhile
		}
		base := []string{sb.Config.Name, sb.Config.Namespace, c.Config.Name, c.ID, s.imageName(ctx, c)}
		out := &runtimeapi.ContainerMetrics{ContainerId: c.ID}
		ts := cm.Timestamp.UnixNano()
		for _, d := range containerMetrics {
			out.Metrics = append(out.Metrics, criMetrics(d.name, d.kind, ts, base, d.values(cm))...)
		}
		pm.ContainerMetrics = append(pm.ContainerMetrics, out)
	}
	return pm
}

func criMetrics(name string, kind runtimeapi.MetricType, ts int64, base []string, samples []sample) []*runtimeapi.Metric {
	out := make([]*runtimeapi.Metric, 0, len(samples))
	for _, v := range samples {
		out = append(out, &runtimeapi.Metric{
			Name:        name,
			Timestamp:   ts,
			MetricType:  kind,
			LabelValues: append(append([]string(nil), base...), v.labels...),
			Value:       &runtimeapi.UInt64Value{Value: v.value},
		})
	}
	return out
}
