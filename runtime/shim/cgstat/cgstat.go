// Package cgstat reads a container's cgroup statistics straight from
// cgroupfs, v1 or v2, into wire.Stats: the figures ContainerStats, the
// CRI metrics and `berth stats` need. It is pure Go with no dependency
// beyond the standard library, so the shim serves stats itself instead of
// running berth-runc (an exec and a libcontainer load, about 4 ms of CPU)
// for each request; opencontainers/cgroups cannot be linked into the shim
// (it brings D-Bus, logrus and more). The files and their meaning follow
// opencontainers/cgroups' GetStats, which the root test compares against.
package cgstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// clockTicks is USER_HZ, the unit of v1's cpuacct.stat (100 on Linux).
const clockTicks = 100

// Read returns the statistics of the cgroup at paths: directories by v1
// controller ("cpu", "cpuacct", "memory", ...) or the v2 directory under
// "". On a hybrid host libcontainer's paths have both, "" naming the
// controller-less unified hierarchy: the v1 controllers are read then. A
// controller that is not there is left at zero; a file that is there but
// unreadable is an error. Processes lists the PIDs in the cgroup and its
// children.
func Read(paths map[string]string) (*wire.Stats, error) {
	s := &wire.Stats{Timestamp: time.Now()}
	v1 := false
	for k := range paths {
		v1 = v1 || k != ""
	}
	var err error
	procs := paths[""]
	if v1 {
		err = readV1(s, paths)
		procs = ""
		for _, c := range []string{"pids", "memory", "cpu", "devices"} {
			if procs == "" {
				procs = paths[c]
			}
		}
	} else {
		err = readV2(s, procs)
	}
	if err != nil {
		return nil, err
	}
	s.OOMKills = OOMKills(paths)
	if procs != "" {
		if s.Processes, err = allPids(procs); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func readV1(s *wire.Stats, paths map[string]string) error {
	if dir, ok := paths["cpuacct"]; ok {
		var err error
		if s.CPUUsage, err = readUint(dir, "cpuacct.usage"); err != nil {
			return err
		}
		kv, err := readKV(dir, "cpuacct.stat")
		if err != nil {
			return err
		}
		s.CPUUser = kv["user"] * uint64(time.Second) / clockTicks
		s.CPUSystem = kv["system"] * uint64(time.Second) / clockTicks
	}
	if dir, ok := paths["cpu"]; ok {
		kv, err := readKV(dir, "cpu.stat")
		if err != nil {
			return err
		}
		s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledTime = kv["nr_periods"], kv["nr_throttled"], kv["throttled_time"]
		s.CPUShares = optUint(dir, "cpu.shares")
		s.CPUPeriod = optUint(dir, "cpu.cfs_period_us")
		s.CPUQuota = optUint(dir, "cpu.cfs_quota_us") // -1 (none) reads as 0
	}
	if dir, ok := paths["memory"]; ok {
		if err := memoryV1(s, dir); err != nil {
			return err
		}
	}
	if dir, ok := paths["pids"]; ok {
		if err := pids(s, dir); err != nil {
			return err
		}
	}
	if dir, ok := paths["blkio"]; ok {
		if err := blkioV1(s, dir); err != nil {
			return err
		}
	}
	if dir, ok := paths["hugetlb"]; ok {
		hugetlb(s, dir, "usage_in_bytes", "max_usage_in_bytes")
	}
	return nil
}

func memoryV1(s *wire.Stats, dir string) error {
	stat, err := readKV(dir, "memory.stat")
	if err != nil {
		return err
	}
	for _, f := range []struct {
		dst  *uint64
		file string
	}{
		{&s.MemoryUsage, "memory.usage_in_bytes"},
		{&s.MemoryLimit, "memory.limit_in_bytes"},
		{&s.MemoryMaxUsage, "memory.max_usage_in_bytes"},
		{&s.MemoryFailcnt, "memory.failcnt"},
	} {
		if *f.dst, err = readUint(dir, f.file); err != nil {
			return err
		}
	}
	workingSet(s, stat["total_inactive_file"])
	s.MemoryStat = stat
	s.MemoryRSS = stat["total_rss"]
	s.MemoryCache = stat["cache"]
	s.MemoryMappedFile = stat["total_mapped_file"]
	s.MemoryKernel = optUint(dir, "memory.kmem.usage_in_bytes")
	// memsw is memory+swap and exists only with swap accounting.
	s.MemorySwapLimit = optUint(dir, "memory.memsw.limit_in_bytes")
	s.MemorySwap = stat["total_swap"]
	s.MemoryReservation = optUint(dir, "memory.soft_limit_in_bytes")
	// total_* count the whole subtree; the bare names the cgroup itself.
	s.PageFaults, s.MajorPageFaults = stat["total_pgfault"], stat["total_pgmajfault"]
	s.OwnPageFaults, s.OwnMajorPageFaults = stat["pgfault"], stat["pgmajfault"]
	return nil
}

// OOMKills reads how often the kernel's OOM killer hit the cgroup: the
// oom_kill counter of v1's memory.oom_control under paths["memory"], or of
// v2's memory.events under paths[""]. It is exact, where an eventfd
// notification may arrive after the init's exit was seen. Unreadable
// counters count as 0.
func OOMKills(paths map[string]string) uint64 {
	if dir, ok := paths["memory"]; ok {
		if n, ok := readKVOpt(dir, "memory.oom_control")["oom_kill"]; ok {
			return n
		}
	}
	if dir, ok := paths[""]; ok {
		return readKVOpt(dir, "memory.events")["oom_kill"]
	}
	return 0
}

// workingSet is the kubelet's figure: usage less inactive file pages.
func workingSet(s *wire.Stats, inactiveFile uint64) {
	if s.MemoryUsage > inactiveFile {
		s.MemoryWorkingSet = s.MemoryUsage - inactiveFile
	}
}

func pids(s *wire.Stats, dir string) error {
	var err error
	if s.Pids, err = readUint(dir, "pids.current"); err != nil {
		return err
	}
	if l := optUint(dir, "pids.max"); l != math.MaxUint64 {
		s.PidsLimit = l
	}
	return nil
}

// blkioV1 reads the first of the kernel's I/O accountings that has data,
// in libcontainer's order: BFQ, CFQ, then the throttling layer's counts.
func blkioV1(s *wire.Stats, dir string) error {
	for _, f := range [][2]string{
		{"blkio.bfq.io_service_bytes_recursive", "blkio.bfq.io_serviced_recursive"},
		{"blkio.io_service_bytes_recursive", "blkio.io_serviced_recursive"},
		{"blkio.throttle.io_service_bytes_recursive", "blkio.throttle.io_serviced_recursive"},
		{"blkio.throttle.io_service_bytes", "blkio.throttle.io_serviced"},
	} {
		bytesEntries, err := blkioEntries(dir, f[0])
		if err != nil {
			return err
		}
		if len(bytesEntries) == 0 {
			continue
		}
		ios, err := blkioEntries(dir, f[1])
		if err != nil {
			return err
		}
		setIO(s, bytesEntries, ios)
		return nil
	}
	return nil
}

// blkioEntries parses "MAJ:MIN Op value" lines; "Total" lines are skipped
// and a missing file has none.
func blkioEntries(dir, file string) ([]wire.BlkioEntry, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []wire.BlkioEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 {
			continue // "Total N" or blank
		}
		major, minor, ok := strings.Cut(f[0], ":")
		e := wire.BlkioEntry{Op: f[1]}
		var errs [3]error
		e.Major, errs[0] = strconv.ParseUint(major, 10, 64)
		e.Minor, errs[1] = strconv.ParseUint(minor, 10, 64)
		e.Value, errs[2] = strconv.ParseUint(f[len(f)-1], 10, 64)
		if !ok || errors.Join(errs[:]...) != nil {
			return nil, fmt.Errorf("parse %s: malformed line %q", filepath.Join(dir, file), line)
		}
		out = append(out, e)
	}
	return out, nil
}

func setIO(s *wire.Stats, bytesEntries, ios []wire.BlkioEntry) {
	for _, e := range bytesEntries {
		switch strings.ToLower(e.Op) {
		case "read":
			s.IOReadBytes += e.Value
		case "write":
			s.IOWriteBytes += e.Value
		}
	}
	s.IOServiceBytes, s.IOServiced = bytesEntries, ios
}

// hugetlb reads hugetlb.<size>.<usage|max> for every page size the kernel
// has (sizes named as the cgroup files name them: 2MB, 1GB).
func hugetlb(s *wire.Stats, dir, usage, max string) {
	ents, _ := os.ReadDir("/sys/kernel/mm/hugepages")
	for _, e := range ents {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB"), 10, 64)
		if err != nil {
			continue
		}
		size := pageSizeName(kb)
		u, err := readUint(dir, "hugetlb."+size+"."+usage)
		if err != nil {
			continue
		}
		if s.Hugetlb == nil {
			s.Hugetlb = map[string]wire.Hugetlb{}
		}
		s.Hugetlb[size] = wire.Hugetlb{Usage: u, MaxUsage: optUint(dir, "hugetlb."+size+"."+max)}
	}
}

func pageSizeName(kb uint64) string {
	for _, u := range []string{"KB", "MB", "GB"} {
		if kb < 1024 || kb%1024 != 0 {
			return strconv.FormatUint(kb, 10) + u
		}
		kb /= 1024
	}
	return strconv.FormatUint(kb, 10) + "TB"
}

func readV2(s *wire.Stats, dir string) error {
	cpu, err := readKV(dir, "cpu.stat")
	if err != nil {
		return err
	}
	s.CPUUsage, s.CPUUser, s.CPUSystem = cpu["usage_usec"]*1000, cpu["user_usec"]*1000, cpu["system_usec"]*1000
	s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledTime = cpu["nr_periods"], cpu["nr_throttled"], cpu["throttled_usec"]*1000
	if w := optUint(dir, "cpu.weight"); w > 0 {
		s.CPUShares = WeightToShares(w)
	}
	// cpu.max is "<quota|max> <period>".
	if f := strings.Fields(readString(dir, "cpu.max")); len(f) == 2 {
		s.CPUQuota, _ = strconv.ParseUint(f[0], 10, 64)
		s.CPUPeriod, _ = strconv.ParseUint(f[1], 10, 64)
	}

	if _, err := os.Stat(filepath.Join(dir, "memory.current")); err == nil {
		stat, err := readKV(dir, "memory.stat")
		if err != nil {
			return err
		}
		if s.MemoryUsage, err = readUint(dir, "memory.current"); err != nil {
			return err
		}
		s.MemoryLimit = optUint(dir, "memory.max")
		s.MemoryMaxUsage = optUint(dir, "memory.peak")
		s.MemoryFailcnt = readKVOpt(dir, "memory.events")["max"]
		workingSet(s, stat["inactive_file"])
		s.MemoryStat = stat
		s.MemoryRSS = stat["anon"]
		s.MemoryCache = stat["file"]
		s.MemoryMappedFile = stat["file_mapped"]
		s.MemoryKernel = stat["kernel"]
		s.MemorySwap = optUint(dir, "memory.swap.current")
		// As libcontainer reports it for v1 compatibility: swap + memory.
		if l := optUint(dir, "memory.swap.max"); l != math.MaxUint64 && s.MemoryLimit != math.MaxUint64 {
			s.MemorySwapLimit = l + s.MemoryLimit
		} else if _, err := os.Stat(filepath.Join(dir, "memory.swap.max")); err == nil {
			s.MemorySwapLimit = math.MaxUint64
		}
		s.MemoryReservation = optUint(dir, "memory.low")
		// v2 counts only hierarchically: both scopes are the same.
		s.PageFaults, s.MajorPageFaults = stat["pgfault"], stat["pgmajfault"]
		s.OwnPageFaults, s.OwnMajorPageFaults = s.PageFaults, s.MajorPageFaults
	}
	if _, err := os.Stat(filepath.Join(dir, "pids.current")); err == nil {
		if err := pids(s, dir); err != nil {
			return err
		}
	}
	if err := ioV2(s, dir); err != nil {
		return err
	}
	hugetlb(s, dir, "current", "max")
	s.Pressure = pressure(dir)
	return nil
}

// ioV2 maps io.stat ("MAJ:MIN rbytes=.. wbytes=.. rios=.. wios=..") to
// v1's layout, as libcontainer does.
func ioV2(s *wire.Stats, dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "io.stat"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var bytesEntries, ios []wire.BlkioEntry
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		major, minor, ok := strings.Cut(f[0], ":")
		maj, err1 := strconv.ParseUint(major, 10, 64)
		min, err2 := strconv.ParseUint(minor, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return fmt.Errorf("parse %s: malformed line %q", filepath.Join(dir, "io.stat"), line)
		}
		for _, kv := range f[1:] {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				continue
			}
			e := wire.BlkioEntry{Major: maj, Minor: min, Value: n}
			switch k {
			case "rbytes":
				e.Op = "Read"
				bytesEntries = append(bytesEntries, e)
			case "wbytes":
				e.Op = "Write"
				bytesEntries = append(bytesEntries, e)
			case "rios":
				e.Op = "Read"
				ios = append(ios, e)
			case "wios":
				e.Op = "Write"
				ios = append(ios, e)
			}
		}
	}
	setIO(s, bytesEntries, ios)
	return nil
}

// pressure reads the PSI totals (microseconds) of cpu, memory and io.
func pressure(dir string) *wire.Pressure {
	var p wire.Pressure
	found := false
	for _, r := range []struct {
		file       string
		some, full *uint64
	}{
		{"cpu.pressure", &p.CPUSome, &p.CPUFull},
		{"memory.pressure", &p.MemorySome, &p.MemoryFull},
		{"io.pressure", &p.IOSome, &p.IOFull},
	} {
		b, err := os.ReadFile(filepath.Join(dir, r.file))
		if err != nil {
			continue
		}
		found = true
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			for _, kv := range f[1:] {
				if v, ok := strings.CutPrefix(kv, "total="); ok {
					n, _ := strconv.ParseUint(v, 10, 64)
					switch f[0] {
					case "some":
						*r.some = n
					case "full":
						*r.full = n
					}
				}
			}
		}
	}
	if !found {
		return nil
	}
	return &p
}

// allPids lists cgroup.procs of dir and every cgroup below it.
func allPids(dir string) ([]int, error) {
	var out []int
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if p != dir && errors.Is(err, os.ErrNotExist) {
				return nil // removed meanwhile
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		if err != nil {
			if p != dir && errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		for _, f := range bytes.Fields(b) {
			if pid, err := strconv.Atoi(string(f)); err == nil {
				out = append(out, pid)
			}
		}
		return nil
	})
	return out, err
}

// readUint reads a file holding one number; "max" is math.MaxUint64 and a
// negative number (v1's -1 for none) is 0.
func readUint(dir, file string) (uint64, error) {
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		return 0, err
	}
	return parseUint(strings.TrimSpace(string(b)), filepath.Join(dir, file))
}

func parseUint(v, path string) (uint64, error) {
	if v == "max" {
		return math.MaxUint64, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		if i, ierr := strconv.ParseInt(v, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return n, nil
}

// optUint is readUint with 0 for a file that is missing or unreadable.
func optUint(dir, file string) uint64 {
	n, _ := readUint(dir, file)
	return n
}

func readString(dir, file string) string {
	b, _ := os.ReadFile(filepath.Join(dir, file))
	return strings.TrimSpace(string(b))
}

// readKV parses "key value" lines.
func readKV(dir, file string) (map[string]uint64, error) {
	f, err := os.Open(filepath.Join(dir, file))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	kv := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		n, err := parseUint(strings.TrimSpace(v), filepath.Join(dir, file))
		if err != nil {
			return nil, err
		}
		kv[k] = n
	}
	return kv, sc.Err()
}

func readKVOpt(dir, file string) map[string]uint64 {
	kv, _ := readKV(dir, file)
	return kv
}

// WeightToShares inverts runc's shares -> weight mapping (a quadratic in
// log2(shares) through 2->1, 1024->100, 262144->10000); rounding in that
// mapping makes the result approximate away from those points.
func WeightToShares(w uint64) uint64 {
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
