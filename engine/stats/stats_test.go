package stats

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime"
)

func TestParseProcStat(t *testing.T) {
	b := []byte("cpu  100 2 30 400 5 6 7 8 0 0\ncpu0 50 1 15 200 2 3 3 4 0 0\ncpu1 50 1 15 200 3 3 4 4 0 0\nintr 1 2 3\nctxt 9\n")
	h, err := parseProcStat(b)
	if err != nil {
		t.Fatal(err)
	}
	// user..softirq, steal left out: 550 ticks of 10 ms.
	if h.SystemUsage != 5500*uint64(time.Millisecond) || h.OnlineCPUs != 2 {
		t.Errorf("host %+v", h)
	}
	for _, bad := range []string{"", "cpu 1 2\n", "cpu a b c d e f g\n"} {
		if _, err := parseProcStat([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
	if h, err := ReadHost(); err != nil || h.OnlineCPUs == 0 || h.SystemUsage == 0 {
		t.Errorf("ReadHost: %+v %v", h, err)
	}
	if m, err := MachineMemory(); err != nil || m < 64<<20 {
		t.Errorf("MachineMemory: %d %v", m, err)
	}
}

// cliCPUPercent and cliMemUsage are the docker CLI's formulas
// (cli/command/container/stats_helpers.go): the response must give the
// figures they expect.
func cliCPUPercent(pre, cur container.CPUStats) float64 {
	cpuDelta := float64(cur.CPUUsage.TotalUsage) - float64(pre.CPUUsage.TotalUsage)
	sysDelta := float64(cur.SystemUsage) - float64(pre.SystemUsage)
	if sysDelta > 0 && cpuDelta > 0 {
		return cpuDelta / sysDelta * float64(cur.OnlineCPUs) * 100
	}
	return 0
}

func cliMemUsage(m container.MemoryStats) uint64 {
	if v, ok := m.Stats["total_inactive_file"]; ok && v < m.Usage {
		return m.Usage - v
	}
	if v := m.Stats["inactive_file"]; v < m.Usage {
		return m.Usage - v
	}
	return m.Usage
}

func TestResponse(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pre := Sample{
		Container: &runtime.ContainerStats{Timestamp: t0, CPUUsage: 1e9},
		Host:      Host{SystemUsage: 100e9, OnlineCPUs: 2},
	}
	cur := Sample{
		Container: &runtime.ContainerStats{
			Timestamp: t0.Add(time.Second), CPUUsage: 1.5e9, CPUUser: 1e9, CPUSystem: 0.5e9,
			MemoryUsage: 10 << 20, MemoryLimit: 1 << 62, MemoryMaxUsage: 12 << 20,
			MemoryStat: map[string]uint64{"total_inactive_file": 2 << 20, "cache": 3 << 20},
			Pids:       3, PidsLimit: 100,
			IOServiceBytes: []runtime.BlkioEntry{{Major: 8, Op: "Read", Value: 4096}, {Major: 8, Op: "Write", Value: 512}},
		},
		Networks: []runtime.InterfaceStats{{Name: "eth0", RxBytes: 100, TxBytes: 50}},
		// Two CPUs for one second: 2e9 ns of host time.
		Host: Host{SystemUsage: 102e9, OnlineCPUs: 2},
	}
	r := Response("abc", "web", cur, &pre, 8<<30)
	if r.Name != "/web" || r.ID != "abc" || !r.Read.Equal(cur.Container.Timestamp) || !r.PreRead.Equal(t0) {
		t.Errorf("identity and times: %+v", r)
	}
	// Half a CPU of two, in the CLI's units: 50%.
	if p := cliCPUPercent(r.PreCPUStats, r.CPUStats); p != 50 {
		t.Errorf("CPU %% = %v, want 50", p)
	}
	if u := cliMemUsage(r.MemoryStats); u != 8<<20 {
		t.Errorf("memory usage %d, want 8 MiB", u)
	}
	if r.MemoryStats.Limit != 8<<30 {
		t.Errorf("unlimited memory: limit %d, want the machine's", r.MemoryStats.Limit)
	}
	if r.PidsStats.Current != 3 || r.PidsStats.Limit != 100 || len(r.BlkioStats.IoServiceBytesRecursive) != 2 || r.Networks["eth0"].RxBytes != 100 {
		t.Errorf("pids, blkio, networks: %+v %+v %+v", r.PidsStats, r.BlkioStats, r.Networks)
	}
	// Without a previous sample (one-shot) precpu is empty.
	one := Response("abc", "web", cur, nil, 8<<30)
	if one.PreCPUStats.SystemUsage != 0 || !one.PreRead.IsZero() {
		t.Errorf("one-shot precpu: %+v", one.PreCPUStats)
	}
	// The wire shape: keys the CLI decodes.
	b, _ := json.Marshal(r)
	for _, k := range []string{`"cpu_stats":{"cpu_usage":{"total_usage":1500000000`, `"system_cpu_usage":102000000000`, `"online_cpus":2`, `"precpu_stats"`, `"total_inactive_file":2097152`, `"io_service_bytes_recursive":[{"major":8`, `"networks":{"eth0"`, `"pids_stats":{"current":3`} {
		if !strings.Contains(string(b), k) {
			t.Errorf("response lacks %s:\n%s", k, b)
		}
	}

	// A v2 cgroup with a limit below the machine's.
	cur.Container.MemoryStat = map[string]uint64{"inactive_file": 1 << 20}
	cur.Container.MemoryLimit = 64 << 20
	r = Response("abc", "web", cur, nil, 8<<30)
	if u := cliMemUsage(r.MemoryStats); u != 9<<20 || r.MemoryStats.Limit != 64<<20 {
		t.Errorf("v2 memory: usage %d limit %d", u, r.MemoryStats.Limit)
	}

	// A container that does not run: zeros, as dockerd answers.
	stopped := Response("abc", "web", Sample{}, nil, 8<<30)
	if stopped.Name != "/web" || !stopped.Read.IsZero() || stopped.CPUStats.CPUUsage.TotalUsage != 0 {
		t.Errorf("stopped: %+v", stopped)
	}
}
