package runtime

import (
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

type fakeNamer map[string]string

func (f fakeNamer) name(major, minor uint64) string {
	return f[strconv.FormatUint(major, 10)+":"+strconv.FormatUint(minor, 10)]
}

func TestMetricsFromStats(t *testing.T) {
	at := time.Unix(1700000000, 5)
	dn := fakeNamer{"8:0": "/dev/sda", "253:1": "/dev/dm-1"}
	for _, tc := range []struct {
		name string
		in   wire.Stats
		want ContainerMetrics
	}{
		{
			name: "empty cgroup",
			in:   wire.Stats{Timestamp: at},
			want: ContainerMetrics{Timestamp: at},
		},
		{
			name: "all figures",
			in: wire.Stats{
				Timestamp: at, CPUUsage: 3e9, CPUUser: 2e9, CPUSystem: 1e9,
				CPUPeriods: 10, CPUThrottledPeriods: 4, CPUThrottledTime: 7e8, CPUShares: 1024, CPUPeriod: 100000,
				MemoryUsage: 100, MemoryWorkingSet: 90, MemoryRSS: 60, MemoryCache: 40, MemoryMappedFile: 5,
				MemoryKernel: 8, MemorySwap: 3, MemoryMaxUsage: 120, MemoryFailcnt: 2, MemoryLimit: 1 << 26, MemorySwapLimit: 1 << 27,
				PageFaults: 50, MajorPageFaults: 5, OwnPageFaults: 40, OwnMajorPageFaults: 4, OOMKills: 1,
				IOServiceBytes: []wire.BlkioEntry{
					{Major: 253, Minor: 1, Op: "Write", Value: 8192},
					{Major: 8, Minor: 0, Op: "Read", Value: 4096},
					{Major: 8, Minor: 0, Op: "Read", Value: 4096}, // a second cgroup level of the same device
				},
				IOServiced: []wire.BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 3}, {Major: 9, Minor: 9, Op: "Sync", Value: 1}},
				Hugetlb:    map[string]wire.Hugetlb{"2MB": {Usage: 2 << 20, MaxUsage: 4 << 20}, "1GB": {}},
				CPUQuota:   50000, MemoryReservation: 1 << 25,
				Pressure: &wire.Pressure{CPUSome: 1500, CPUFull: 2, MemorySome: 3, MemoryFull: 4, IOSome: 5, IOFull: 6},
			},
			want: ContainerMetrics{
				Timestamp: at,
				CPU:       CPUMetrics{Usage: 3e9, User: 2e9, System: 1e9, Periods: 10, ThrottledPeriods: 4, ThrottledTime: 7e8, Shares: 1024, Period: 100000, Quota: 50000},
				Memory: MemoryMetrics{
					Usage: 100, WorkingSet: 90, RSS: 60, Cache: 40, MappedFile: 5, Kernel: 8, Swap: 3,
					MaxUsage: 120, Failcnt: 2, Limit: 1 << 26, SwapLimit: 1 << 27,
					PageFaults: 50, MajorPageFaults: 5, OwnPageFaults: 40, OwnMajorPageFaults: 4, OOMKills: 1, Reservation: 1 << 25,
				},
				BlockIO: []BlockIO{
					{Device: "/dev/sda", Major: 8, Minor: 0, Op: "Read", Bytes: 8192, Ops: 3},
					{Device: "", Major: 9, Minor: 9, Op: "Sync", Ops: 1},
					{Device: "/dev/dm-1", Major: 253, Minor: 1, Op: "Write", Bytes: 8192},
				},
				Hugetlb: []Hugetlb{{PageSize: "1GB"}, {PageSize: "2MB", Usage: 2 << 20, MaxUsage: 4 << 20}},
				Pressure: &Pressure{
					CPUSome: 1500 * time.Microsecond, CPUFull: 2 * time.Microsecond,
					MemorySome: 3 * time.Microsecond, MemoryFull: 4 * time.Microsecond,
					IOSome: 5 * time.Microsecond, IOFull: 6 * time.Microsecond,
				},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := metricsFromStats(&tc.in, dn)
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("got  %+v\nwant %+v", *got, tc.want)
			}
		})
	}
}

func TestCountProcesses(t *testing.T) {
	proc := t.TempDir()
	// pid 10: 2 threads, fds 0..2 plus a socket; pid 11: 1 thread, a
	// socket and a pipe; pid 12 exited (absent).
	mk := func(pid string, tasks int, fds map[string]string) {
		for i := range tasks {
			if err := os.MkdirAll(filepath.Join(proc, pid, "task", strconv.Itoa(100+i)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll(filepath.Join(proc, pid, "fd"), 0o755); err != nil {
			t.Fatal(err)
		}
		for fd, target := range fds {
			if err := os.Symlink(target, filepath.Join(proc, pid, "fd", fd)); err != nil {
				t.Fatal(err)
			}
		}
	}
	mk("10", 2, map[string]string{"0": "/dev/null", "1": "pipe:[1]", "2": "pipe:[2]", "3": "socket:[77]"})
	mk("11", 1, map[string]string{"0": "socket:[78]", "4": "pipe:[3]"})
	got := countProcesses(proc, []int{10, 11, 12})
	want := ProcessMetrics{Processes: 2, Threads: 3, FileDescriptors: 6, Sockets: 2}
	if got != want {
		t.Errorf("got %+v want %+v", got, want)
	}
	if got := countProcesses(proc, nil); got != (ProcessMetrics{}) {
		t.Errorf("no pids: %+v", got)
	}
}

func TestFilesystemMetrics(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "f"), filepath.Join(dir, "hardlink")); err != nil {
		t.Fatal(err)
	}
	got := filesystemMetrics(dir, devNamer{})
	// dir and one file (its two names count once).
	if got.UsedInodes != 2 || got.UsedBytes < 64<<10 || got.UsedBytes > 2*(64<<10)+64<<10 {
		t.Errorf("used: %+v", got)
	}
	if got.CapacityBytes == 0 || got.AvailableBytes > got.CapacityBytes || got.InodesFree > got.Inodes || got.Device == "" {
		t.Errorf("filesystem: %+v", got)
	}
}

func TestReadUlimits(t *testing.T) {
	proc := t.TempDir()
	if err := os.MkdirAll(filepath.Join(proc, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	limits := `Limit                     Soft Limit           Hard Limit           Units     
Max cpu time              unlimited            unlimited            seconds   
Max stack size            8388608              unlimited            bytes     
Max processes             96365                96365                processes 
Max open files            1024                 4096                 files     
Max realtime timeout      unlimited            unlimited            us        
`
	if err := os.WriteFile(filepath.Join(proc, "7", "limits"), []byte(limits), 0o644); err != nil {
		t.Fatal(err)
	}
	got := readUlimits(proc, 7)
	want := []Ulimit{{"max_stack_size", 8388608}, {"max_processes", 96365}, {"max_open_files", 1024}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v want %+v", got, want)
	}
	if got := readUlimits(proc, 8); got != nil {
		t.Errorf("exited process: %+v", got)
	}
}
