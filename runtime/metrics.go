package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// ContainerMetrics are the figures behind a running container's CRI
// metrics (cAdvisor's container_* family). Everything is read when asked:
// the cgroup by the shim, processes under /proc and the writable layer's
// filesystem by berthd.
type ContainerMetrics struct {
	ID        string
	Timestamp time.Time
	StartedAt time.Time
	CPU       CPUMetrics
	Memory    MemoryMetrics
	// BlockIO has one entry per device and operation (Read, Write, Sync,
	// Async, Discard, Total as the kernel names them).
	BlockIO   []BlockIO
	Hugetlb   []Hugetlb
	Processes ProcessMetrics
	// Ulimits are the init process's finite soft limits.
	Ulimits    []Ulimit
	Filesystem FilesystemMetrics
	// Pressure is nil where the kernel keeps no per-cgroup pressure stall
	// information (cgroup v1).
	Pressure *Pressure
}

// Pressure are total stall times: Some while at least one task waited for
// the resource, Full while all were stalled.
type Pressure struct {
	CPUSome, CPUFull       time.Duration
	MemorySome, MemoryFull time.Duration
	IOSome, IOFull         time.Duration
}

// CPUMetrics: times in nanoseconds; Shares and Period are the cgroup's
// settings as read back.
type CPUMetrics struct {
	Usage, User, System       uint64
	Periods, ThrottledPeriods uint64
	ThrottledTime             uint64
	Shares, Period            uint64
	// Quota is the CFS quota in microseconds per Period, 0 if unlimited.
	Quota uint64
}

// MemoryMetrics in bytes, except the counters. PageFaults are
// hierarchical, OwnPageFaults the cgroup's alone (the same on cgroup v2).
type MemoryMetrics struct {
	Usage, WorkingSet, RSS, Cache, MappedFile, Kernel, Swap uint64
	MaxUsage, Failcnt, Limit, SwapLimit                     uint64
	PageFaults, MajorPageFaults                             uint64
	OwnPageFaults, OwnMajorPageFaults                       uint64
	OOMKills                                                uint64
	// Reservation is the soft limit (v1) or memory.low (v2).
	Reservation uint64
}

// BlockIO is one device's counters for one operation.
type BlockIO struct {
	// Device is the block device's /dev path, or "major:minor" when sysfs
	// does not name it.
	Device       string
	Major, Minor uint64
	Op           string
	Bytes, Ops   uint64
}

// Hugetlb is one huge page size's usage in bytes.
type Hugetlb struct {
	PageSize        string
	Usage, MaxUsage uint64
}

// Ulimit is a soft resource limit, named as cAdvisor does
// ("max_open_files").
type Ulimit struct {
	Name string
	Soft uint64
}

// ProcessMetrics count what the container's processes hold. ThreadsMax is
// the pids limit, 0 when unlimited.
type ProcessMetrics struct {
	Processes, Threads, ThreadsMax, FileDescriptors, Sockets uint64
}

// FilesystemMetrics describe the writable layer: what it uses and the
// filesystem it lives on.
type FilesystemMetrics struct {
	Device                        string
	UsedBytes, UsedInodes         uint64
	CapacityBytes, AvailableBytes uint64
	Inodes, InodesFree            uint64
}

// SandboxMetrics are a ready pod's network counters and its running
// containers' metrics.
type SandboxMetrics struct {
	ID        string
	Timestamp time.Time
	// Network is nil with host networking.
	Network    []InterfaceStats
	Containers []ContainerMetrics
}

// ContainerMetrics reads a running container's metrics; a container that
// does not run has none (FailedPrecondition).
func (m *Manager) ContainerMetrics(ctx context.Context, id string) (*ContainerMetrics, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, fmt.Errorf("metrics of container: %w", err)
	}
	m.mu.Lock()
	state, cl, upper, started, pid := c.rec.State, c.client, c.rec.UpperDir, c.rec.StartedAt, c.rec.Pid
	m.mu.Unlock()
	if state != ContainerRunning || cl == nil {
		return nil, fmt.Errorf("metrics of container %s: it is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	s, err := cl.Stats(ctx)
	if err != nil {
		if errdefs.IsUnavailable(err) {
			// The shim is gone: the container ended meanwhile.
			return nil, fmt.Errorf("metrics of container %s: %w: %w", c.rec.ID, errdefs.ErrFailedPrecondition, err)
		}
		return nil, fmt.Errorf("metrics of container %s: %w", c.rec.ID, err)
	}
	out := metricsFromStats(&s, devNamer{})
	out.ID, out.StartedAt = c.rec.ID, started
	out.Processes = countProcesses("/proc", s.Processes)
	out.Processes.ThreadsMax = s.PidsLimit
	if pid > 0 {
		out.Ulimits = readUlimits("/proc", pid)
	}
	if upper != "" {
		out.Filesystem = filesystemMetrics(upper, devNamer{})
	}
	return out, nil
}

// SandboxMetrics reads a pod's network counters and the metrics of its
// running containers.
func (m *Manager) SandboxMetrics(ctx context.Context, id string) (*SandboxMetrics, error) {
	s, err := m.getSandbox(id)
	if err != nil {
		return nil, fmt.Errorf("metrics of sandbox: %w", err)
	}
	m.mu.Lock()
	netns := s.rec.NetNSPath
	m.mu.Unlock()
	out := &SandboxMetrics{ID: s.rec.ID, Timestamp: time.Now()}
	for _, c := range m.podContainers(s.rec.ID) {
		cm, err := m.ContainerMetrics(ctx, c.rec.ID)
		if errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) {
			continue // not running, or removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("metrics of sandbox %s: %w", s.rec.ID, err)
		}
		out.Containers = append(out.Containers, *cm)
	}
	if out.Network, err = podNetwork(netns); err != nil {
		return nil, fmt.Errorf("metrics of sandbox %s: %w", s.rec.ID, err)
	}
	return out, nil
}

// deviceNamer names a block device by its numbers.
type deviceNamer interface {
	name(major, minor uint64) string
}

// devNamer asks sysfs: /sys/dev/block/M:m links to the device's directory,
// whose base name is the /dev node's name.
type devNamer struct{}

func (devNamer) name(major, minor uint64) string {
	mm := strconv.FormatUint(major, 10) + ":" + strconv.FormatUint(minor, 10)
	if p, err := os.Readlink(filepath.Join("/sys/dev/block", mm)); err == nil {
		return "/dev/" + filepath.Base(p)
	}
	return mm
}

// metricsFromStats maps the shim's cgroup figures; the processes and the
// filesystem are filled by the caller.
func metricsFromStats(s *wire.Stats, dn deviceNamer) *ContainerMetrics {
	out := &ContainerMetrics{
		Timestamp: s.Timestamp,
		CPU: CPUMetrics{
			Usage: s.CPUUsage, User: s.CPUUser, System: s.CPUSystem,
			Periods: s.CPUPeriods, ThrottledPeriods: s.CPUThrottledPeriods, ThrottledTime: s.CPUThrottledTime,
			Shares: s.CPUShares, Period: s.CPUPeriod, Quota: s.CPUQuota,
		},
		Memory: MemoryMetrics{
			Usage: s.MemoryUsage, WorkingSet: s.MemoryWorkingSet, RSS: s.MemoryRSS, Cache: s.MemoryCache,
			MappedFile: s.MemoryMappedFile, Kernel: s.MemoryKernel, Swap: s.MemorySwap,
			MaxUsage: s.MemoryMaxUsage, Failcnt: s.MemoryFailcnt, Limit: s.MemoryLimit, SwapLimit: s.MemorySwapLimit,
			PageFaults: s.PageFaults, MajorPageFaults: s.MajorPageFaults,
			OwnPageFaults: s.OwnPageFaults, OwnMajorPageFaults: s.OwnMajorPageFaults,
			OOMKills: s.OOMKills, Reservation: s.MemoryReservation,
		},
	}
	if p := s.Pressure; p != nil {
		us := func(v uint64) time.Duration { return time.Duration(v) * time.Microsecond }
		out.Pressure = &Pressure{
			CPUSome: us(p.CPUSome), CPUFull: us(p.CPUFull),
			MemorySome: us(p.MemorySome), MemoryFull: us(p.MemoryFull),
			IOSome: us(p.IOSome), IOFull: us(p.IOFull),
		}
	}
	type key struct {
		major, minor uint64
		op           string
	}
	io := map[key]*BlockIO{}
	entry := func(e wire.BlkioEntry) *BlockIO {
		k := key{e.Major, e.Minor, e.Op}
		b, ok := io[k]
		if !ok {
			b = &BlockIO{Device: dn.name(e.Major, e.Minor), Major: e.Major, Minor: e.Minor, Op: e.Op}
			io[k] = b
		}
		return b
	}
	for _, e := range s.IOServiceBytes {
		entry(e).Bytes += e.Value
	}
	for _, e := range s.IOServiced {
		entry(e).Ops += e.Value
	}
	for _, b := range io {
		out.BlockIO = append(out.BlockIO, *b)
	}
	sort.Slice(out.BlockIO, func(i, j int) bool {
		a, b := out.BlockIO[i], out.BlockIO[j]
		if a.Major != b.Major || a.Minor != b.Minor {
			return a.Major < b.Major || a.Major == b.Major && a.Minor < b.Minor
		}
		return a.Op < b.Op
	})
	for size, h := range s.Hugetlb {
		out.Hugetlb = append(out.Hugetlb, Hugetlb{PageSize: size, Usage: h.Usage, MaxUsage: h.MaxUsage})
	}
	sort.Slice(out.Hugetlb, func(i, j int) bool { return out.Hugetlb[i].PageSize < out.Hugetlb[j].PageSize })
	return out
}

// countProcesses counts the threads, open file descriptors and sockets of
// pids under procRoot. A process that exits meanwhile is left out.
func countProcesses(procRoot string, pids []int) ProcessMetrics {
	var pm ProcessMetrics
	for _, pid := range pids {
		dir := filepath.Join(procRoot, strconv.Itoa(pid))
		tasks, err := os.ReadDir(filepath.Join(dir, "task"))
		if err != nil {
			continue
		}
		pm.Processes++
		pm.Threads += uint64(len(tasks))
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			pm.FileDescriptors++
			if l, err := os.Readlink(filepath.Join(dir, "fd", fd.Name())); err == nil && strings.HasPrefix(l, "socket:") {
				pm.Sockets++
			}
		}
	}
	return pm
}

// filesystemMetrics measures the writable layer dir and the filesystem
// holding it. The layer shares that filesystem with others, so capacity
// and free figures are the filesystem's, as cAdvisor reports them.
func filesystemMetrics(dir string, dn deviceNamer) FilesystemMetrics {
	var fm FilesystemMetrics
	fm.UsedBytes, fm.UsedInodes = diskUsage(dir)
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil {
		bs := uint64(st.Bsize)
		fm.CapacityBytes = st.Blocks * bs
		fm.AvailableBytes = st.Bavail * bs
		fm.Inodes = st.Files
		fm.InodesFree = st.Ffree
	}
	var s unix.Stat_t
	if err := unix.Stat(dir, &s); err == nil {
		fm.Device = dn.name(uint64(unix.Major(s.Dev)), uint64(unix.Minor(s.Dev)))
	}
	return fm
}

// readUlimits parses /proc/<pid>/limits ("Max open files  1024  4096
// files"), keeping the numeric soft limits.
func readUlimits(procRoot string, pid int) []Ulimit {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "limits"))
	if err != nil {
		return nil
	}
	var out []Ulimit
	for _, line := range strings.Split(string(b), "\n")[1:] {
		// The name column is 26 wide and holds spaces.
		if len(line) < 26 {
			continue
		}
		f := strings.Fields(line[26:])
		if len(f) < 2 {
			continue
		}
		soft, err := strconv.ParseUint(f[0], 10, 64)
		if err != nil {
			continue // unlimited
		}
		name := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(line[:26])), " ", "_")
		out = append(out, Ulimit{Name: name, Soft: soft})
	}
	return out
}
