package cri

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// metricsRuntime serves SandboxMetrics from a map.
type metricsRuntime struct {
	fakeRuntime
	metrics map[string]*runtime.SandboxMetrics
}

func (f *metricsRuntime) SandboxMetrics(_ context.Context, id string) (*runtime.SandboxMetrics, error) {
	m, ok := f.metrics[id]
	if !ok {
		return nil, fmt.Errorf("metrics of sandbox %s: %w", id, errdefs.ErrNotFound)
	}
	return m, nil
}

var metricsAt = time.Unix(1700000000, 0)

func busyContainerMetrics(id string) runtime.ContainerMetrics {
	return runtime.ContainerMetrics{
		ID: id, Timestamp: metricsAt, StartedAt: time.Unix(1699999000, 0),
		CPU:    runtime.CPUMetrics{Usage: 2_700_000_000, User: 1_999_999_999, System: 700_000_000, Periods: 30, ThrottledPeriods: 12, ThrottledTime: 3_100_000_000, Shares: 1024, Period: 100000, Quota: 50000},
		Memory: runtime.MemoryMetrics{Usage: 100, WorkingSet: 90, RSS: 60, Cache: 40, MappedFile: 5, Kernel: 8, Swap: 3, MaxUsage: 120, Failcnt: 2, Limit: 64 << 20, SwapLimit: 64 << 20, PageFaults: 50, MajorPageFaults: 5, OwnPageFaults: 40, OwnMajorPageFaults: 4, OOMKills: 1, Reservation: 1 << 25},
		BlockIO: []runtime.BlockIO{
			{Device: "/dev/vda", Major: 254, Minor: 0, Op: "Read", Bytes: 4096, Ops: 1},
			{Device: "/dev/vda", Major: 254, Minor: 0, Op: "Write", Bytes: 8192, Ops: 2},
			{Device: "/dev/vdb", Major: 254, Minor: 16, Op: "Write", Bytes: 512, Ops: 1},
		},
		Hugetlb:    []runtime.Hugetlb{{PageSize: "2MB", Usage: 2 << 20, MaxUsage: 4 << 20}},
		Ulimits:    []runtime.Ulimit{{Name: "max_open_files", Soft: 1024}, {Name: "max_processes", Soft: 100}},
		Processes:  runtime.ProcessMetrics{Processes: 2, Threads: 5, ThreadsMax: 1024, FileDescriptors: 9, Sockets: 1},
		Filesystem: runtime.FilesystemMetrics{Device: "/dev/vda", UsedBytes: 40960, UsedInodes: 12, CapacityBytes: 1 << 30, AvailableBytes: 1 << 29, Inodes: 1000, InodesFree: 900},
		Pressure: &runtime.Pressure{
			CPUSome: 5 * time.Second, CPUFull: 1500 * time.Millisecond, MemorySome: 7 * time.Second,
			MemoryFull: 6 * time.Second, IOSome: 9 * time.Second, IOFull: 8 * time.Second,
		},
	}
}

func newMetricsService() (*RuntimeService, *metricsRuntime) {
	rt := &metricsRuntime{metrics: map[string]*runtime.SandboxMetrics{}}
	pod := func(id, name string, state runtime.SandboxState) {
		rt.sandboxes = append(rt.sandboxes, &runtime.Sandbox{ID: id, State: state, Config: runtime.SandboxConfig{Name: name, Namespace: "ns"}})
	}
	pod("pod1", "web", runtime.SandboxReady)
	pod("pod2", "gone", runtime.SandboxReady) // removed between list and read
	pod("pod3", "stopped", runtime.SandboxNotReady)
	rt.containers = []*runtime.Container{{ID: "ctr1", SandboxID: "pod1", State: runtime.ContainerRunning, Config: runtime.ContainerConfig{Name: "app", Image: "busybox:1"}}}
	rt.metrics["pod1"] = &runtime.SandboxMetrics{
		ID: "pod1", Timestamp: metricsAt,
		Network: []runtime.InterfaceStats{
			{Name: "eth0", RxBytes: 1000, RxPackets: 10, RxDropped: 1, RxErrors: 2, TxBytes: 2000, TxPackets: 20, TxDropped: 3, TxErrors: 4},
			{Name: "net1", RxBytes: 7},
		},
		// ctr9 was removed after the runtime read it.
		Containers: []runtime.ContainerMetrics{busyContainerMetrics("ctr1"), busyContainerMetrics("ctr9")},
	}
	rt.metrics["pod3"] = &runtime.SandboxMetrics{ID: "pod3"}
	return NewRuntimeService(withRuntime(RuntimeOptions{}, rt)), rt
}

// key renders a metric as name{labels}.
func key(m *runtimeapi.Metric) string {
	return m.Name + "{" + strings.Join(m.LabelValues, ",") + "}"
}

func TestListPodSandboxMetrics(t *testing.T) {
	s, _ := newMetricsService()
	resp, err := s.ListPodSandboxMetrics(t.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.PodMetrics) != 1 || resp.PodMetrics[0].PodSandboxId != "pod1" {
		t.Fatalf("want only the ready pod that still exists, got %d pods", len(resp.PodMetrics))
	}
	pm := resp.PodMetrics[0]
	if len(pm.ContainerMetrics) != 1 || pm.ContainerMetrics[0].ContainerId != "ctr1" {
		t.Fatalf("container metrics: %v", pm.ContainerMetrics)
	}
	got := map[string]*runtimeapi.Metric{}
	for _, m := range append(slices.Clone(pm.Metrics), pm.ContainerMetrics[0].Metrics...) {
		if _, dup := got[key(m)]; dup {
			t.Errorf("duplicate series %s", key(m))
		}
		got[key(m)] = m
	}
	const c = "web,ns,app,ctr1,busybox:1"
	const p = "web,ns,,pod1,"
	for _, tc := range []struct {
		series string
		value  uint64
		kind   runtimeapi.MetricType
	}{
		// Whole seconds, truncated.
		{"container_cpu_usage_seconds_total{" + c + ",total}", 2, counter},
		{"container_cpu_user_seconds_total{" + c + "}", 1, counter},
		{"container_cpu_system_seconds_total{" + c + "}", 0, counter},
		{"container_cpu_cfs_periods_total{" + c + "}", 30, counter},
		{"container_cpu_cfs_throttled_periods_total{" + c + "}", 12, counter},
		{"container_cpu_cfs_throttled_seconds_total{" + c + "}", 3, counter},
		{"container_memory_working_set_bytes{" + c + "}", 90, gauge},
		{"container_memory_usage_bytes{" + c + "}", 100, gauge},
		{"container_memory_rss{" + c + "}", 60, gauge},
		{"container_memory_cache{" + c + "}", 40, gauge},
		{"container_memory_mapped_file{" + c + "}", 5, gauge},
		{"container_memory_kernel_usage{" + c + "}", 8, gauge},
		{"container_memory_swap{" + c + "}", 3, gauge},
		{"container_memory_max_usage_bytes{" + c + "}", 120, gauge},
		{"container_memory_failcnt{" + c + "}", 2, counter},
		{"container_memory_failures_total{" + c + ",pgfault,container}", 40, counter},
		{"container_memory_failures_total{" + c + ",pgmajfault,container}", 4, counter},
		{"container_memory_failures_total{" + c + ",pgfault,hierarchy}", 50, counter},
		{"container_memory_failures_total{" + c + ",pgmajfault,hierarchy}", 5, counter},
		{"container_oom_events_total{" + c + "}", 1, counter},
		{"container_hugetlb_usage_bytes{" + c + ",2MB}", 2 << 20, gauge},
		{"container_hugetlb_max_usage_bytes{" + c + ",2MB}", 4 << 20, gauge},
		{"container_fs_usage_bytes{" + c + ",/dev/vda}", 40960, gauge},
		{"container_fs_limit_bytes{" + c + ",/dev/vda}", 1 << 30, gauge},
		{"container_fs_inodes_total{" + c + ",/dev/vda}", 1000, gauge},
		{"container_fs_inodes_free{" + c + ",/dev/vda}", 900, gauge},
		{"container_fs_reads_bytes_total{" + c + ",/dev/vda}", 4096, counter},
		{"container_fs_writes_bytes_total{" + c + ",/dev/vda}", 8192, counter},
		{"container_fs_writes_bytes_total{" + c + ",/dev/vdb}", 512, counter},
		{"container_fs_reads_total{" + c + ",/dev/vda}", 1, counter},
		{"container_fs_writes_total{" + c + ",/dev/vda}", 2, counter},
		{"container_blkio_device_usage_total{" + c + ",/dev/vdb,254,16,Write}", 512, counter},
		{"container_processes{" + c + "}", 2, gauge},
		{"container_threads{" + c + "}", 5, gauge},
		{"container_threads_max{" + c + "}", 1024, gauge},
		{"container_file_descriptors{" + c + "}", 9, gauge},
		{"container_sockets{" + c + "}", 1, gauge},
		{"container_spec_cpu_period{" + c + "}", 100000, gauge},
		{"container_spec_cpu_shares{" + c + "}", 1024, gauge},
		{"container_spec_cpu_quota{" + c + "}", 50000, gauge},
		{"container_spec_memory_reservation_limit_bytes{" + c + "}", 1 << 25, gauge},
		{"container_ulimits_soft{" + c + ",max_open_files}", 1024, gauge},
		{"container_ulimits_soft{" + c + ",max_processes}", 100, gauge},
		{"container_spec_memory_limit_bytes{" + c + "}", 64 << 20, gauge},
		{"container_spec_memory_swap_limit_bytes{" + c + "}", 64 << 20, gauge},
		{"container_pressure_cpu_waiting_seconds_total{" + c + "}", 5, counter},
		{"container_pressure_cpu_stalled_seconds_total{" + c + "}", 1, counter},
		{"container_pressure_memory_waiting_seconds_total{" + c + "}", 7, counter},
		{"container_pressure_memory_stalled_seconds_total{" + c + "}", 6, counter},
		{"container_pressure_io_waiting_seconds_total{" + c + "}", 9, counter},
		{"container_pressure_io_stalled_seconds_total{" + c + "}", 8, counter},
		{"container_start_time_seconds{" + c + "}", 1699999000, gauge},
		{"container_last_seen{" + c + "}", 1700000000, gauge},
		{"container_network_receive_bytes_total{" + p + ",eth0}", 1000, counter},
		{"container_network_receive_packets_total{" + p + ",eth0}", 10, counter},
		{"container_network_receive_packets_dropped_total{" + p + ",eth0}", 1, counter},
		{"container_network_receive_errors_total{" + p + ",eth0}", 2, counter},
		{"container_network_transmit_bytes_total{" + p + ",eth0}", 2000, counter},
		{"container_network_transmit_packets_total{" + p + ",eth0}", 20, counter},
		{"container_network_transmit_packets_dropped_total{" + p + ",eth0}", 3, counter},
		{"container_network_transmit_errors_total{" + p + ",eth0}", 4, counter},
		{"container_network_receive_bytes_total{" + p + ",net1}", 7, counter},
	} {
		m, ok := got[tc.series]
		if !ok {
			t.Errorf("missing %s", tc.series)
			continue
		}
		if m.GetValue().GetValue() != tc.value || m.MetricType != tc.kind || m.Timestamp != metricsAt.UnixNano() {
			t.Errorf("%s = %d (%v at %d), want %d (%v)", tc.series, m.GetValue().GetValue(), m.MetricType, m.Timestamp, tc.value, tc.kind)
		}
	}
}

// TestMetricDescriptorsMatchMetrics checks what the kubelet relies on:
// every metric returned is described, with as many label values as the
// descriptor has keys, and every descriptor is served for a container
// that has all figures.
func TestMetricDescriptorsMatchMetrics(t *testing.T) {
	s, _ := newMetricsService()
	dresp, err := s.ListMetricDescriptors(t.Context(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range dresp.Descriptors {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("descriptor %s: help %q labels %v", d.Name, d.Help, d.LabelKeys)
		}
		if _, dup := descs[d.Name]; dup {
			t.Errorf("descriptor %s twice", d.Name)
		}
		descs[d.Name] = d
	}
	resp, err := s.ListPodSandboxMetrics(t.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pm := resp.PodMetrics[0]
	served := map[string]bool{}
	for _, m := range append(slices.Clone(pm.Metrics), pm.ContainerMetrics[0].Metrics...) {
		d, ok := descs[m.Name]
		if !ok {
			t.Errorf("metric %s has no descriptor", m.Name)
			continue
		}
		if len(m.LabelValues) != len(d.LabelKeys) {
			t.Errorf("%s: %d label values for keys %v", key(m), len(m.LabelValues), d.LabelKeys)
		}
		served[m.Name] = true
	}
	for name := range descs {
		if !served[name] {
			t.Errorf("descriptor %s is never served", name)
		}
	}
}

// A container without a measured writable layer, block I/O or huge pages
// leaves those series out rather than reporting zeros it did not read.
func TestContainerMetricsLeaveOutWhatWasNotRead(t *testing.T) {
	s, rt := newMetricsService()
	cm := rt.metrics["pod1"].Containers[0]
	cm.Filesystem, cm.BlockIO, cm.Hugetlb, cm.StartedAt, cm.Pressure = runtime.FilesystemMetrics{}, nil, nil, time.Time{}, nil
	cm.CPU.Quota, cm.Ulimits = 0, nil
	rt.metrics["pod1"].Containers = []runtime.ContainerMetrics{cm}
	rt.metrics["pod1"].Network = nil // host network
	resp, err := s.ListPodSandboxMetrics(t.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pm := resp.PodMetrics[0]
	if len(pm.Metrics) != 0 {
		t.Errorf("host-network pod has pod metrics: %v", pm.Metrics)
	}
	for _, m := range pm.ContainerMetrics[0].Metrics {
		if strings.HasPrefix(m.Name, "container_fs_") || strings.HasPrefix(m.Name, "container_blkio") ||
			strings.HasPrefix(m.Name, "container_hugetlb") || strings.HasPrefix(m.Name, "container_pressure") ||
			m.Name == "container_start_time_seconds" || m.Name == "container_spec_cpu_quota" || m.Name == "container_ulimits_soft" {
			t.Errorf("unread figure served: %s", key(m))
		}
	}
}

func TestListPodSandboxMetricsFails(t *testing.T) {
	s, rt := newMetricsService()
	rt.sandboxes = rt.sandboxes[:1]
	delete(rt.metrics, "pod1")
	rt.metrics["pod1"] = nil
	s.opts.Stats = &failingMetrics{rt}
	_, err := s.ListPodSandboxMetrics(t.Context(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if !errdefs.IsUnavailable(err) {
		t.Errorf("got %v, want the runtime's Unavailable", err)
	}
}

type failingMetrics struct{ *metricsRuntime }

func (failingMetrics) SandboxMetrics(context.Context, string) (*runtime.SandboxMetrics, error) {
	return nil, fmt.Errorf("shim: %w", errdefs.ErrUnavailable)
}
