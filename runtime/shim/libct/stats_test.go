package libct

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/cgroups"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

func TestFillStats(t *testing.T) {
	base := func() cgroups.Stats {
		var cs cgroups.Stats
		cs.CpuStats.CpuUsage = cgroups.CpuUsage{TotalUsage: 3e9, UsageInUsermode: 2e9, UsageInKernelmode: 1e9}
		cs.CpuStats.ThrottlingData = cgroups.ThrottlingData{Periods: 50, ThrottledPeriods: 7, ThrottledTime: 4e8}
		cs.MemoryStats.Usage = cgroups.MemoryData{Usage: 10 << 20, MaxUsage: 12 << 20, Failcnt: 3, Limit: 64 << 20}
		cs.MemoryStats.Cache = 4 << 20
		cs.MemoryStats.SwapUsage = cgroups.MemoryData{Limit: 128 << 20}
		cs.BlkioStats.IoServiceBytesRecursive = []cgroups.BlkioStatEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}, {Major: 8, Minor: 0, Op: "Write", Value: 8192}}
		cs.BlkioStats.IoServicedRecursive = []cgroups.BlkioStatEntry{{Major: 8, Minor: 0, Op: "Read", Value: 1}}
		cs.PidsStats = cgroups.PidsStats{Current: 4, Limit: 100}
		return cs
	}
	v1 := base()
	v1.MemoryStats.KernelUsage.Usage = 300 << 10
	v1.MemoryStats.Stats = map[string]uint64{
		"total_inactive_file": 1 << 20, "total_rss": 5 << 20, "total_mapped_file": 2 << 20, "total_swap": 1 << 10,
		"total_pgfault": 900, "total_pgmajfault": 9, "pgfault": 800, "pgmajfault": 8,
	}
	v2 := base()
	v2.MemoryStats.SwapOnlyUsage.Usage = 2 << 10
	v2.CpuStats.PSI = &cgroups.PSIStats{Some: cgroups.PSIData{Total: 11}, Full: cgroups.PSIData{Total: 12}}
	v2.MemoryStats.PSI = &cgroups.PSIStats{Some: cgroups.PSIData{Total: 21}, Full: cgroups.PSIData{Total: 22}}
	v2.BlkioStats.PSI = &cgroups.PSIStats{Some: cgroups.PSIData{Avg10: 1.5, Total: 31}, Full: cgroups.PSIData{Total: 32}}
	v2.MemoryStats.Stats = map[string]uint64{
		"inactive_file": 2 << 20, "anon": 6 << 20, "file_mapped": 3 << 20, "kernel": 400 << 10,
		"pgfault": 700, "pgmajfault": 7,
	}
	common := wire.Stats{
		CPUUsage: 3e9, CPUUser: 2e9, CPUSystem: 1e9, CPUPeriods: 50, CPUThrottledPeriods: 7, CPUThrottledTime: 4e8,
		MemoryUsage: 10 << 20, MemoryMaxUsage: 12 << 20, MemoryFailcnt: 3, MemoryLimit: 64 << 20, MemoryCache: 4 << 20, MemorySwapLimit: 128 << 20,
		IOReadBytes: 4096, IOWriteBytes: 8192,
		IOServiceBytes: []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 4096}, {Major: 8, Op: "Write", Value: 8192}},
		IOServiced:     []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 1}},
		Pids:           4, PidsLimit: 100,
	}
	wantV1 := common
	wantV1.MemoryWorkingSet = 9 << 20
	wantV1.MemoryRSS = 5 << 20
	wantV1.MemoryMappedFile = 2 << 20
	wantV1.MemoryKernel = 300 << 10
	wantV1.MemorySwap = 1 << 10
	wantV1.PageFaults, wantV1.MajorPageFaults = 900, 9
	wantV1.OwnPageFaults, wantV1.OwnMajorPageFaults = 800, 8
	wantV2 := common
	wantV2.MemoryWorkingSet = 8 << 20
	wantV2.MemoryRSS = 6 << 20
	wantV2.MemoryMappedFile = 3 << 20
	wantV2.MemoryKernel = 400 << 10
	wantV2.MemorySwap = 2 << 10
	wantV2.PageFaults, wantV2.MajorPageFaults = 700, 7
	wantV2.OwnPageFaults, wantV2.OwnMajorPageFaults = 700, 7
	wantV2.Pressure = &wire.Pressure{CPUSome: 11, CPUFull: 12, MemorySome: 21, MemoryFull: 22, IOSome: 31, IOFull: 32}

	for _, tc := range []struct {
		name string
		in   cgroups.Stats
		want wire.Stats
	}{
		{"cgroup v1", v1, wantV1},
		{"cgroup v2", v2, wantV2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got wire.Stats
			fillStats(&got, &tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("fillStats:\n got  %+v\n want %+v", got, tc.want)
			}
		})
	}
}

func TestWeightToShares(t *testing.T) {
	for _, shares := range []uint64{2, 512, 1024, 2048, 102, 262144} {
		w := cgroups.ConvertCPUSharesToCgroupV2Value(shares)
		got := weightToShares(w)
		// The forward mapping rounds up to an integer weight, so the way
		// back lands within a few percent.
		if d := float64(got) - float64(shares); d > 0.05*float64(shares)+1 || d < -0.05*float64(shares)-1 {
			t.Errorf("shares %d -> weight %d -> shares %d", shares, w, got)
		}
	}
}

func TestCPUSettings(t *testing.T) {
	dir := t.TempDir()
	v1 := filepath.Join(dir, "v1")
	v2 := filepath.Join(dir, "v2")
	for _, d := range []string{v1, v2} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(p, s string) {
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(v1, "cpu.shares"), "512\n")
	write(filepath.Join(v1, "cpu.cfs_period_us"), "100000\n")
	write(filepath.Join(v1, "cpu.cfs_quota_us"), "-1\n")
	write(filepath.Join(v1, "memory.soft_limit_in_bytes"), "9223372036854771712\n")
	write(filepath.Join(v2, "cpu.weight"), "100\n")
	write(filepath.Join(v2, "cpu.max"), "20000 50000\n")
	write(filepath.Join(v2, "memory.low"), "1048576\n")
	if s, p, q := cpuSettings(map[string]string{"cpu": v1}); s != 512 || p != 100000 || q != 0 {
		t.Errorf("v1: shares %d period %d quota %d", s, p, q)
	}
	if s, p, q := cpuSettings(map[string]string{"": v2}); s < 1000 || s > 1050 || p != 50000 || q != 20000 {
		t.Errorf("v2: shares %d period %d quota %d", s, p, q)
	}
	if s, p, q := cpuSettings(map[string]string{}); s != 0 || p != 0 || q != 0 {
		t.Errorf("no cgroup: shares %d period %d quota %d", s, p, q)
	}
	write(filepath.Join(v2, "cpu.max"), "max 100000\n")
	if _, p, q := cpuSettings(map[string]string{"": v2}); p != 100000 || q != 0 {
		t.Errorf("v2 unlimited: period %d quota %d", p, q)
	}
	if r := memoryReservation(map[string]string{"memory": v1}); r != 9223372036854771712 {
		t.Errorf("v1 reservation %d", r)
	}
	if r := memoryReservation(map[string]string{"": v2}); r != 1<<20 {
		t.Errorf("v2 reservation %d", r)
	}
}
