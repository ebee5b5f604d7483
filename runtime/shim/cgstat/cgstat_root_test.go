package cgstat

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestReadMatchesLibcontainer reads a real cgroup (v1 here, v2 where the
// host has it) holding a process that burnt some CPU and compare what
// opencontainers/cgroups' GetStats reports, which berth-runc used before:
// settings and gauges must agree, counters must fall between two readings
// of it taken around ours.
func TestReadMatchesLibcontainer(t *testing.T) {
	testutil.RequireRoot(t, "reads a real container's cgroups")
	cg := &cgroups.Cgroup{
		Path: fmt.Sprintf("/berth-cgstat-%d", os.Getpid()),
		Resources: &cgroups.Resources{
			Memory: 64 << 20, PidsLimit: ptr(int64(50)), CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000,
		},
	}
	m, err := manager.New(cg)
	if err != nil {
		t.Fatal(err)
	}
	// The loop (~120 ms of CPU: a dozen of cpuacct.stat's ticks, so that
	// user and system time tell apart) waits for a line on stdin, sent
	// once the process is in the cgroup: started at once, it could end
	// before Apply on a busy machine and leave the cgroup no CPU time.
	cmd := exec.Command("sh", "-c", "read go; i=0; while [ $i -lt 150000 ]; do i=$((i+1)); done; exec sleep 60")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		for range 50 {
			if m.Destroy() == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Errorf("cgroup %s left behind", cg.Path)
	})
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := m.Set(cg.Resources); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	// The figures are read once the process sleeps (the loop done, sleep
	// exec'd and blocked), so that none moves between the readings but
	// by the kernel's own doing: a fixed pause was too short when the
	// machine was busy.
	waitSleeping(t, cmd.Process.Pid)

	before, err := m.GetStats()
	if err != nil {
		t.Fatal(err)
	}
	got, err := Read(m.GetPaths())
	if err != nil {
		t.Fatal(err)
	}
	after, err := m.GetStats()
	if err != nil {
		t.Fatal(err)
	}

	between := func(name string, v, lo, hi uint64) {
		if v < lo || v > hi {
			t.Errorf("%s = %d, libcontainer read %d then %d", name, v, lo, hi)
		}
	}
	equal := func(name string, v, want uint64) {
		if v != want {
			t.Errorf("%s = %d, libcontainer %d", name, v, want)
		}
	}
	between("CPUUsage", got.CPUUsage, before.CpuStats.CpuUsage.TotalUsage, after.CpuStats.CpuUsage.TotalUsage)
	between("CPUUser", got.CPUUser, before.CpuStats.CpuUsage.UsageInUsermode, after.CpuStats.CpuUsage.UsageInUsermode)
	between("CPUSystem", got.CPUSystem, before.CpuStats.CpuUsage.UsageInKernelmode, after.CpuStats.CpuUsage.UsageInKernelmode)
	between("CPUPeriods", got.CPUPeriods, before.CpuStats.ThrottlingData.Periods, after.CpuStats.ThrottlingData.Periods)
	if got.CPUUsage == 0 {
		t.Error("no CPU usage read for a process that looped")
	}
	equal("MemoryLimit", got.MemoryLimit, after.MemoryStats.Usage.Limit)
	between("MemoryUsage", got.MemoryUsage, min(before.MemoryStats.Usage.Usage, after.MemoryStats.Usage.Usage), max(before.MemoryStats.Usage.Usage, after.MemoryStats.Usage.Usage))
	between("MemoryMaxUsage", got.MemoryMaxUsage, before.MemoryStats.Usage.MaxUsage, after.MemoryStats.Usage.MaxUsage)
	equal("MemoryCache", got.MemoryCache, after.MemoryStats.Cache)
	equal("MemorySwapLimit", got.MemorySwapLimit, after.MemoryStats.SwapUsage.Limit)
	equal("Pids", got.Pids, after.PidsStats.Current)
	equal("PidsLimit", got.PidsLimit, after.PidsStats.Limit)
	var libIO []uint64
	for _, e := range after.BlkioStats.IoServiceBytesRecursive {
		libIO = append(libIO, e.Value)
	}
	var ourIO []uint64
	for _, e := range got.IOServiceBytes {
		ourIO = append(ourIO, e.Value)
	}
	if !slices.Equal(ourIO, libIO) {
		t.Errorf("IOServiceBytes values %v, libcontainer %v", ourIO, libIO)
	}
	equal("CPUShares", got.CPUShares, 512)
	equal("CPUQuota", got.CPUQuota, 50000)
	equal("CPUPeriod", got.CPUPeriod, 100000)
	equal("PidsLimit (set)", got.PidsLimit, 50)
	equal("MemoryLimit (set)", got.MemoryLimit, 64<<20)
	procs, err := m.GetAllPids()
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(procs); !slices.Equal(slices.Sorted(slices.Values(got.Processes)), procs) {
		t.Errorf("Processes %v, libcontainer %v", got.Processes, procs)
	}
}

// waitSleeping waits until pid runs sleep(1) and is blocked (state S).
func waitSleeping(t *testing.T, pid int) {
	t.Helper()
	var stat []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		stat, _ = os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		// "pid (comm) state ...": comm may hold spaces and parentheses.
		if i := bytes.LastIndexByte(stat, ')'); i > 0 && bytes.HasSuffix(stat[:i], []byte("(sleep")) && bytes.HasPrefix(stat[i+1:], []byte(" S ")) {
			return
		}
	}
	t.Fatalf("process %d did not reach sleep: %q", pid, stat)
}

func ptr[T any](v T) *T { return &v }
