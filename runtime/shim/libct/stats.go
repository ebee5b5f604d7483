package libct

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// fillStats copies libcontainer's cgroup figures into s. cgroup v1 reports
// hierarchical totals in memory.stat with a total_ prefix; v2 has no
// prefix and other names (anon, file, file_mapped, kernel).
func fillStats(s *wire.Stats, cs *cgroups.Stats) {
	cpu := cs.CpuStats
	s.CPUUsage = cpu.CpuUsage.TotalUsage
	s.CPUUser = cpu.CpuUsage.UsageInUsermode
	s.CPUSystem = cpu.CpuUsage.UsageInKernelmode
	s.CPUPeriods = cpu.ThrottlingData.Periods
	s.CPUThrottledPeriods = cpu.ThrottlingData.ThrottledPeriods
	s.CPUThrottledTime = cpu.ThrottlingData.ThrottledTime

	mem := cs.MemoryStats
	stat := func(v1, v2 string) uint64 {
		if v, ok := mem.Stats[v1]; ok {
			return v
		}
		return mem.Stats[v2]
	}
	_, v1 := mem.Stats["total_rss"]
	s.MemoryUsage = mem.Usage.Usage
	s.MemoryLimit = mem.Usage.Limit
	s.MemoryMaxUsage = mem.Usage.MaxUsage
	s.MemoryFailcnt = mem.Usage.Failcnt
	if inactive := stat("total_inactive_file", "inactive_file"); s.MemoryUsage > inactive {
		// The kubelet's working set: usage less inactive file pages.
		s.MemoryWorkingSet = s.MemoryUsage - inactive
	}
	s.MemoryRSS = stat("total_rss", "anon")
	s.MemoryCache = mem.Cache
	s.MemoryMappedFile = stat("total_mapped_file", "file_mapped")
	s.MemoryKernel = mem.KernelUsage.Usage
	if s.MemoryKernel == 0 {
		s.MemoryKernel = mem.Stats["kernel"]
	}
	s.MemorySwapLimit = mem.SwapUsage.Limit
	if v1 {
		// total_swap exists only with swap accounting; memsw is mem+swap.
		s.MemorySwap = mem.Stats["total_swap"]
	} else {
		s.MemorySwap = mem.SwapOnlyUsage.Usage
	}
	s.PageFaults = stat("total_pgfault", "pgfault")
	s.MajorPageFaults = stat("total_pgmajfault", "pgmajfault")
	// v1 has the cgroup's own counts without prefix; v2 only counts
	// hierarchically, so both scopes are the same there.
	s.OwnPageFaults = mem.Stats["pgfault"]
	s.OwnMajorPageFaults = mem.Stats["pgmajfault"]

	for _, e := range cs.BlkioStats.IoServiceBytesRecursive {
		switch strings.ToLower(e.Op) {
		case "read":
			s.IOReadBytes += e.Value
		case "write":
			s.IOWriteBytes += e.Value
		}
		s.IOServiceBytes = append(s.IOServiceBytes, wire.BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	for _, e := range cs.BlkioStats.IoServicedRecursive {
		s.IOServiced = append(s.IOServiced, wire.BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	for size, h := range cs.HugetlbStats {
		if s.Hugetlb == nil {
			s.Hugetlb = map[string]wire.Hugetlb{}
		}
		s.Hugetlb[size] = wire.Hugetlb{Usage: h.Usage, MaxUsage: h.MaxUsage}
	}
	s.Pids = cs.PidsStats.Current
	s.PidsLimit = cs.PidsStats.Limit
	// libcontainer reads PSI on cgroup v2 only, one file per resource.
	if cpu.PSI != nil || mem.PSI != nil || cs.BlkioStats.PSI != nil {
		p := &wire.Pressure{}
		if v := cpu.PSI; v != nil {
			p.CPUSome, p.CPUFull = v.Some.Total, v.Full.Total
		}
		if v := mem.PSI; v != nil {
			p.MemorySome, p.MemoryFull = v.Some.Total, v.Full.Total
		}
		if v := cs.BlkioStats.PSI; v != nil {
			p.IOSome, p.IOFull = v.Some.Total, v.Full.Total
		}
		s.Pressure = p
	}
}

// cpuSettings reads the CPU shares, CFS period and quota in effect from
// the cgroup, where the kernel's defaults show when the container set
// none. An unlimited quota (v1 -1, v2 "max") reads as 0.
func cpuSettings(paths map[string]string) (shares, period, quota uint64) {
	if p, ok := paths["cpu"]; ok {
		return readUint(filepath.Join(p, "cpu.shares")), readUint(filepath.Join(p, "cpu.cfs_period_us")),
			readUint(filepath.Join(p, "cpu.cfs_quota_us"))
	}
	p, ok := paths[""]
	if !ok {
		return 0, 0, 0
	}
	if w := readUint(filepath.Join(p, "cpu.weight")); w > 0 {
		shares = weightToShares(w)
	}
	// cpu.max is "<quota|max> <period>".
	if b, err := os.ReadFile(filepath.Join(p, "cpu.max")); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			quota, _ = strconv.ParseUint(f[0], 10, 64)
			period, _ = strconv.ParseUint(f[1], 10, 64)
		}
	}
	return shares, period, quota
}

// memoryReservation reads the memory soft limit: v1's soft limit, or v2's
// memory.low (the protection the kubelet's reservation maps to).
func memoryReservation(paths map[string]string) uint64 {
	if p, ok := paths["memory"]; ok {
		return readUint(filepath.Join(p, "memory.soft_limit_in_bytes"))
	}
	if p, ok := paths[""]; ok {
		return readUint(filepath.Join(p, "memory.low"))
	}
	return 0
}

func readUint(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	v, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return v
}

// weightToShares inverts runc's shares -> weight mapping (a quadratic in
// log2(shares) through 2->1, 1024->100, 262144->10000); rounding in that
// mapping makes the result approximate away from those points.
func weightToShares(w uint64) uint64 {
	if w <= 1 {
		return 2
	}
	if w >= 10000 {
		return 262144
	}
	e := math.Log10(float64(w)) + 7.0/34.0
	l := (-125 + math.Sqrt(125*125+4*612*e)) / 2
	return uint64(math.Round(math.Pow(2, l)))
}
