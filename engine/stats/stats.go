// Package stats shapes a container's runtime figures into Docker's stats
// response (GET /containers/{id}/stats), the way dockerd fills it from
// its cgroups: CPU with the host's cumulative usage and online CPUs (the
// docker CLI's CPU % divides the container's delta by the host's), memory
// with the cgroup's memory.stat whole (the CLI subtracts
// total_inactive_file on cgroup v1, inactive_file on v2) and the limit
// capped at the machine's memory, block I/O by device, PIDs and the
// network namespace's interfaces.
package stats

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime"
)

// clockTicks is USER_HZ, the unit of /proc/stat.
const clockTicks = 100

// Host is the host's CPU counters at one moment.
type Host struct {
	// SystemUsage is the host's cumulative CPU time in nanoseconds (user,
	// nice, system, idle, iowait, irq and softirq, as dockerd sums them).
	SystemUsage uint64
	// OnlineCPUs counts the CPUs /proc/stat lists.
	OnlineCPUs uint32
}

// ReadHost reads /proc/stat.
func ReadHost() (Host, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Host{}, fmt.Errorf("read host cpu usage: %w", err)
	}
	return parseProcStat(b)
}

func parseProcStat(b []byte) (Host, error) {
	var h Host
	found := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		if f[0] != "cpu" {
			h.OnlineCPUs++
			continue
		}
		if len(f) < 8 {
			return Host{}, fmt.Errorf("parse /proc/stat: short cpu line %q", sc.Text())
		}
		var ticks uint64
		for _, v := range f[1:8] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return Host{}, fmt.Errorf("parse /proc/stat: %w", err)
			}
			ticks += n
		}
		h.SystemUsage = ticks * uint64(time.Second) / clockTicks
		found = true
	}
	if !found {
		return Host{}, fmt.Errorf("parse /proc/stat: no cpu line")
	}
	return h, nil
}

// MachineMemory is the host's total memory in bytes (/proc/meminfo).
func MachineMemory() (uint64, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("read machine memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse /proc/meminfo: %w", err)
			}
			return kb * 1024, nil
		}
	}
	return 0, fmt.Errorf("parse /proc/meminfo: no MemTotal")
}

// Sample is one reading of a container.
type Sample struct {
	// Container is nil for a container that does not run: its figures
	// are all zero, as dockerd reports a stopped container.
	Container *runtime.ContainerStats
	Networks  []runtime.InterfaceStats
	Host      Host
}

// Response is Docker's stats response for the sample cur, with pre (nil
// for a one-shot reading) as the previous one. name is the container's
// name without the leading "/".
func Response(id, name string, cur Sample, pre *Sample, machineMemory uint64) container.StatsResponse {
	r := container.StatsResponse{ID: id, Name: "/" + name, OSType: "linux"}
	c := cur.Container
	if c == nil {
		// dockerd's answer for a container that is not running.
		return r
	}
	r.Read = c.Timestamp
	r.CPUStats = cpuStats(c, cur.Host)
	if pre != nil && pre.Container != nil {
		r.PreRead = pre.Container.Timestamp
		r.PreCPUStats = cpuStats(pre.Container, pre.Host)
	}
	r.MemoryStats = container.MemoryStats{
		Usage:    c.MemoryUsage,
		MaxUsage: c.MemoryMaxUsage,
		Failcnt:  c.MemoryFailcnt,
		Limit:    c.MemoryLimit,
		Stats:    c.MemoryStat,
	}
	// An unlimited cgroup reads back as a huge number: dockerd reports
	// the machine's memory instead.
	if machineMemory > 0 && (r.MemoryStats.Limit == 0 || r.MemoryStats.Limit > machineMemory) {
		r.MemoryStats.Limit = machineMemory
	}
	r.PidsStats = container.PidsStats{Current: c.Pids, Limit: c.PidsLimit}
	r.BlkioStats = container.BlkioStats{
		IoServiceBytesRecursive: blkio(c.IOServiceBytes),
		IoServicedRecursive:     blkio(c.IOServiced),
	}
	if len(cur.Networks) > 0 {
		r.Networks = map[string]container.NetworkStats{}
		for _, n := range cur.Networks {
			r.Networks[n.Name] = container.NetworkStats{
				RxBytes: n.RxBytes, RxPackets: n.RxPackets, RxErrors: n.RxErrors, RxDropped: n.RxDropped,
				TxBytes: n.TxBytes, TxPackets: n.TxPackets, TxErrors: n.TxErrors, TxDropped: n.TxDropped,
			}
		}
	}
	return r
}

func cpuStats(c *runtime.ContainerStats, h Host) container.CPUStats {
	return container.CPUStats{
		CPUUsage: container.CPUUsage{
			TotalUsage:        c.CPUUsage,
			UsageInKernelmode: c.CPUSystem,
			UsageInUsermode:   c.CPUUser,
		},
		SystemUsage: h.SystemUsage,
		OnlineCPUs:  h.OnlineCPUs,
		ThrottlingData: container.ThrottlingData{
			Periods:          c.CPUPeriods,
			ThrottledPeriods: c.CPUThrottledPeriods,
			ThrottledTime:    c.CPUThrottledTime,
		},
	}
}

func blkio(in []runtime.BlkioEntry) []container.BlkioStatEntry {
	// Docker sends [] rather than null for an empty list.
	out := make([]container.BlkioStatEntry, 0, len(in))
	for _, e := range in {
		out = append(out, container.BlkioStatEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value})
	}
	return out
}
