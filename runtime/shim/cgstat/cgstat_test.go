package cgstat

import (
	"math"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/opencontainers/cgroups"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// TestReadV1 reads a fake v1 hierarchy laid out as libcontainer's paths
// map it (cpu and cpuacct sharing a directory).
func TestReadV1(t *testing.T) {
	d := t.TempDir()
	testutil.WriteFiles(t, d, map[string]string{
		"cpu/cpuacct.usage":                  "3000000000\n",
		"cpu/cpuacct.stat":                   "user 200\nsystem 100\n",
		"cpu/cpu.stat":                       "nr_periods 50\nnr_throttled 7\nthrottled_time 400000000\n",
		"cpu/cpu.shares":                     "512\n",
		"cpu/cpu.cfs_period_us":              "100000\n",
		"cpu/cpu.cfs_quota_us":               "-1\n",
		"memory/memory.usage_in_bytes":       "10485760\n",
		"memory/memory.limit_in_bytes":       "67108864\n",
		"memory/memory.max_usage_in_bytes":   "12582912\n",
		"memory/memory.failcnt":              "3\n",
		"memory/memory.kmem.usage_in_bytes":  "307200\n",
		"memory/memory.memsw.limit_in_bytes": "134217728\n",
		"memory/memory.soft_limit_in_bytes":  "9223372036854771712\n",
		"memory/memory.oom_control":          "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
		"memory/memory.stat": "cache 4194304\nrss 5000\npgfault 800\npgmajfault 8\n" +
			"total_cache 4194304\ntotal_rss 5242880\ntotal_mapped_file 2097152\ntotal_swap 1024\n" +
			"total_pgfault 900\ntotal_pgmajfault 9\ntotal_inactive_file 1048576\n",
		"pids/cgroup.procs":       "10\n11\n",
		"pids/child/cgroup.procs": "12\n",
		"pids/pids.current":       "4\n",
		"pids/pids.max":           "100\n",
		"blkio/blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\nTotal 12288\n",
		"blkio/blkio.throttle.io_serviced_recursive":      "8:0 Read 1\nTotal 1\n",
		"blkio/blkio.io_service_bytes_recursive":          "Total 0\n",
	})
	paths := map[string]string{
		"cpu": filepath.Join(d, "cpu"), "cpuacct": filepath.Join(d, "cpu"),
		"memory": filepath.Join(d, "memory"), "pids": filepath.Join(d, "pids"), "blkio": filepath.Join(d, "blkio"),
	}
	got, err := Read(paths)
	if err != nil {
		t.Fatal(err)
	}
	want := &wire.Stats{
		Timestamp: got.Timestamp,
		CPUUsage:  3e9, CPUUser: 2e9, CPUSystem: 1e9, CPUPeriods: 50, CPUThrottledPeriods: 7, CPUThrottledTime: 4e8,
		CPUShares: 512, CPUPeriod: 100000,
		MemoryUsage: 10 << 20, MemoryLimit: 64 << 20, MemoryMaxUsage: 12 << 20, MemoryFailcnt: 3,
		MemoryWorkingSet: 9 << 20, MemoryRSS: 5 << 20, MemoryCache: 4 << 20, MemoryMappedFile: 2 << 20,
		MemoryKernel: 300 << 10, MemorySwap: 1 << 10, MemorySwapLimit: 128 << 20, MemoryReservation: 9223372036854771712,
		PageFaults: 900, MajorPageFaults: 9, OwnPageFaults: 800, OwnMajorPageFaults: 8,
		IOReadBytes: 4096, IOWriteBytes: 8192,
		IOServiceBytes: []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 4096}, {Major: 8, Op: "Write", Value: 8192}, {Major: 8, Op: "Sync"}},
		IOServiced:     []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 1}},
		Pids:           4, PidsLimit: 100,
		OOMKills:  2,
		Processes: []int{12, 10, 11},
		MemoryStat: map[string]uint64{"cache": 4 << 20, "rss": 5000, "pgfault": 800, "pgmajfault": 8,
			"total_cache": 4 << 20, "total_rss": 5 << 20, "total_mapped_file": 2 << 20, "total_swap": 1024,
			"total_pgfault": 900, "total_pgmajfault": 9, "total_inactive_file": 1 << 20},
	}
	slices.Sort(got.Processes)
	slices.Sort(want.Processes)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read:\n got  %+v\n want %+v", got, want)
	}
}

// TestReadV2 reads a fake v2 cgroup.
func TestReadV2(t *testing.T) {
	d := t.TempDir()
	testutil.WriteFiles(t, d, map[string]string{
		"cpu.stat":            "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 50\nnr_throttled 7\nthrottled_usec 400000\n",
		"cpu.weight":          "100\n",
		"cpu.max":             "20000 50000\n",
		"memory.current":      "10485760\n",
		"memory.max":          "67108864\n",
		"memory.peak":         "12582912\n",
		"memory.low":          "1048576\n",
		"memory.events":       "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
		"memory.swap.current": "2048\n",
		"memory.swap.max":     "max\n",
		"memory.stat": "anon 6291456\nfile 4194304\nkernel 409600\nfile_mapped 3145728\n" +
			"inactive_file 2097152\npgfault 700\npgmajfault 7\n",
		"pids.current":    "4\n",
		"pids.max":        "max\n",
		"io.stat":         "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
		"cpu.pressure":    "some avg10=0.00 avg60=0.00 avg300=0.00 total=11\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=12\n",
		"memory.pressure": "some avg10=0.00 avg60=0.00 avg300=0.00 total=21\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=22\n",
		"io.pressure":     "some avg10=1.50 avg60=0.00 avg300=0.00 total=31\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=32\n",
		"cgroup.procs":    "10\n",
	})
	got, err := Read(map[string]string{"": d})
	if err != nil {
		t.Fatal(err)
	}
	want := &wire.Stats{
		Timestamp: got.Timestamp,
		CPUUsage:  3e9, CPUUser: 2e9, CPUSystem: 1e9, CPUPeriods: 50, CPUThrottledPeriods: 7, CPUThrottledTime: 4e8,
		CPUShares: WeightToShares(100), CPUPeriod: 50000, CPUQuota: 20000,
		MemoryUsage: 10 << 20, MemoryLimit: 64 << 20, MemoryMaxUsage: 12 << 20, MemoryFailcnt: 3,
		MemoryWorkingSet: 8 << 20, MemoryRSS: 6 << 20, MemoryCache: 4 << 20, MemoryMappedFile: 3 << 20,
		MemoryKernel: 400 << 10, MemorySwap: 2 << 10, MemorySwapLimit: math.MaxUint64, MemoryReservation: 1 << 20,
		PageFaults: 700, MajorPageFaults: 7, OwnPageFaults: 700, OwnMajorPageFaults: 7,
		IOReadBytes: 4096, IOWriteBytes: 8192,
		IOServiceBytes: []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 4096}, {Major: 8, Op: "Write", Value: 8192}},
		IOServiced:     []wire.BlkioEntry{{Major: 8, Op: "Read", Value: 1}, {Major: 8, Op: "Write", Value: 2}},
		Pids:           4,
		Pressure:       &wire.Pressure{CPUSome: 11, CPUFull: 12, MemorySome: 21, MemoryFull: 22, IOSome: 31, IOFull: 32},
		OOMKills:       1,
		Processes:      []int{10},
		MemoryStat: map[string]uint64{"anon": 6 << 20, "file": 4 << 20, "kernel": 400 << 10, "file_mapped": 3 << 20,
			"inactive_file": 2 << 20, "pgfault": 700, "pgmajfault": 7},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Read:\n got  %+v\n want %+v", got, want)
	}
}

// TestReadRefusesGarbage: a file that is there but malformed is an error,
// not a zero.
func TestReadRefusesGarbage(t *testing.T) {
	d := t.TempDir()
	testutil.WriteFiles(t, d, map[string]string{"cpuacct.usage": "lots\n", "cpuacct.stat": "user 1\nsystem 1\n"})
	if _, err := Read(map[string]string{"cpuacct": d}); err == nil {
		t.Error("Read of a malformed cpuacct.usage succeeded")
	}
	d = t.TempDir()
	testutil.WriteFiles(t, d, map[string]string{"cpu.stat": "usage_usec 1\n", "io.stat": "eight:zero rbytes=1\n"})
	if _, err := Read(map[string]string{"": d}); err == nil {
		t.Error("Read of a malformed io.stat succeeded")
	}
}

func TestWeightToShares(t *testing.T) {
	for _, shares := range []uint64{2, 512, 1024, 2048, 102, 262144} {
		w := cgroups.ConvertCPUSharesToCgroupV2Value(shares)
		got := WeightToShares(w)
		// The forward mapping rounds up to an integer weight, so the way
		// back lands within a few percent.
		if d := float64(got) - float64(shares); d > 0.05*float64(shares)+1 || d < -0.05*float64(shares)-1 {
			t.Errorf("shares %d -> weight %d -> shares %d", shares, w, got)
		}
	}
}

func TestPageSizeName(t *testing.T) {
	for kb, want := range map[uint64]string{64: "64KB", 2048: "2MB", 1 << 20: "1GB", 1536: "1536KB"} {
		if got := pageSizeName(kb); got != want {
			t.Errorf("pageSizeName(%d) = %q, want %q", kb, got, want)
		}
	}
}

func TestOOMKills(t *testing.T) {
	v1, v2 := t.TempDir(), t.TempDir()
	testutil.WriteFiles(t, v1, map[string]string{"memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"})
	testutil.WriteFiles(t, v2, map[string]string{"memory.events": "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n"})
	for name, tc := range map[string]struct {
		paths map[string]string
		want  uint64
	}{
		"v1":      {map[string]string{"memory": v1, "cpu": v2}, 3},
		"hybrid":  {map[string]string{"memory": v1, "": v2}, 3},
		"v2":      {map[string]string{"": v2}, 2},
		"missing": {map[string]string{"memory": t.TempDir()}, 0},
		"none":    {nil, 0},
	} {
		if got := OOMKills(tc.paths); got != tc.want {
			t.Errorf("%s: OOMKills = %d, want %d", name, got, tc.want)
		}
	}
}
