package runtime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// hostPageSizes lists the huge page sizes the kernel has, as the kubelet
// names them (libcontainer's HugePageSizes).
func hostPageSizes(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir("/sys/kernel/mm/hugepages")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(e.Name(), "hugepages-"), "kB"), 10, 64)
		if err != nil {
			t.Fatalf("page size dir %s: %v", e.Name(), err)
		}
		switch {
		case kb%(1<<20) == 0:
			out = append(out, fmt.Sprintf("%dGB", kb>>20))
		case kb%(1<<10) == 0:
			out = append(out, fmt.Sprintf("%dMB", kb>>10))
		default:
			out = append(out, fmt.Sprintf("%dKB", kb))
		}
	}
	return out
}

func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// hugetlbUsable says whether runc can write hugetlb limits here: a v1
// hugetlb hierarchy, or hugetlb among the v2 root's controllers.
func hugetlbUsable() bool {
	if cgroupV2() {
		b, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return strings.Contains(" "+string(b)+" ", " hugetlb ")
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if i := strings.Index(l, " - cgroup "); i > 0 && strings.Contains(","+l[strings.LastIndexByte(l, ' ')+1:]+",", ",hugetlb,") {
			return true
		}
	}
	return false
}

// kubeletLimits is what kubelet v1.37 sends for a guaranteed container on
// this host: hugepage limits of 0 for every page size the kernel has,
// swap equal to memory on v1 (with swap accounting), memory.high=max and
// memory.oom.group on v2.
func kubeletLimits(t *testing.T) spec.Resources {
	r := spec.Resources{CPUShares: 102, CPUQuota: 10000, CPUPeriod: 100000, MemoryLimit: 64 << 20, CpusetCpus: "0", CpusetMems: "0"}
	for _, s := range hostPageSizes(t) {
		r.HugepageLimits = append(r.HugepageLimits, spec.HugepageLimit{PageSize: s})
	}
	if cgroupV2() {
		r.Unified = map[string]string{"memory.high": "max", "memory.oom.group": "1"}
	} else if _, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"); err == nil {
		swap := r.MemoryLimit
		r.MemorySwap = &swap
	}
	return r
}

// TestKubeletResourcesRoot runs containers with the limits a real kubelet
// sends, plus the ones a v1 host cannot apply at all, and checks what the
// container gets. On this machine (cgroup v1 hybrid, hugetlb in the kernel
// but not mounted) runc used to fail every kubelet container with "cannot
// set hugetlb limit: container could not join or create cgroup".
func TestKubeletResourcesRoot(t *testing.T) {
	needRoot(t)
	if len(hostPageSizes(t)) == 0 {
		t.Log("the kernel has no huge page sizes: the kubelet sends no hugepage limits here")
	}
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	r := kubeletLimits(t)
	if !cgroupV2() {
		// runc refuses any unified file on v1 ("cannot use unified on cgroup v1").
		r.Unified = map[string]string{"memory.high": "max"}
	}
	oom := -997 // the kubelet's score for a guaranteed pod
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "kubelet-limits", Rootfs: overlay(t),
		Spec: spec.Container{Args: []string{"sleep", "300"}, Resources: r, OOMScoreAdj: &oom},
	})
	if err != nil {
		t.Fatalf("create with the kubelet's limits: %v", err)
	}
	t.Cleanup(func() { m.RemoveContainer(context.Background(), c.ID) })
	start(t, m, c.ID)

	// The limits the host can apply are in force.
	mem, cpuQuota, cpus := "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpuset/cpuset.cpus"
	if cgroupV2() {
		mem, cpuQuota, cpus = "/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpuset.cpus"
	}
	if got := execOut(t, m, c.ID, "cat", mem); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit in the container = %q", got)
	}
	if got := execOut(t, m, c.ID, "cat", cpuQuota); !strings.HasPrefix(got, "10000") {
		t.Errorf("cpu quota in the container = %q", got)
	}
	if got := execOut(t, m, c.ID, "cat", cpus); got != "0" {
		t.Errorf("cpuset in the container = %q", got)
	}
	// oom_score_adj: the kubelet's -997, raised to berthd's own floor.
	floor, err := spec.CurrentOOMScoreAdj()
	if err != nil {
		t.Fatal(err)
	}
	if got := execOut(t, m, c.ID, "cat", "/proc/self/oom_score_adj"); got != strconv.Itoa(max(oom, floor)) {
		t.Errorf("oom_score_adj = %s, want %d", got, max(oom, floor))
	}
	// The status reports what the container has, not what was asked.
	got, err := m.Container(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res := got.Config.Spec.Resources; hugetlbUsable() != (len(res.HugepageLimits) > 0) || (!cgroupV2() && res.Unified != nil) {
		t.Errorf("recorded resources %+v (hugetlb usable: %v)", res, hugetlbUsable())
	}

	// An update carrying the same limits (the kubelet's in-place resize)
	// goes through too.
	r.MemoryLimit = 96 << 20
	if r.MemorySwap != nil {
		r.MemorySwap = &r.MemoryLimit
	}
	if err := m.UpdateContainerResources(t.Context(), c.ID, r); err != nil {
		t.Fatalf("update with the kubelet's limits: %v", err)
	}
	if got := execOut(t, m, c.ID, "cat", mem); got != strconv.Itoa(96<<20) {
		t.Errorf("memory limit after update = %q", got)
	}
}

// TestStrictResourcesRoot: with StrictResources a limit this host cannot
// apply fails the creation (and an update) with FailedPrecondition and a
// message that names it, and leaves nothing behind.
func TestStrictResourcesRoot(t *testing.T) {
	needRoot(t)
	cfg := testConfig()
	cfg.Root = filepath.Join(testRoot, "strict")
	cfg.StateDir = filepath.Join(stateRoot, "s")
	cfg.StrictResources = true
	m, err := berthruntime.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	sb := newPod(t, m, berthruntime.SandboxConfig{})

	// Something no host of the tests can apply: a page size that does not
	// exist, or unified files on v1.
	bad := spec.Resources{HugepageLimits: []spec.HugepageLimit{{PageSize: "7MB"}}}
	want := "hugepage"
	if !hugetlbUsable() {
		bad = kubeletLimits(t)
		if len(bad.HugepageLimits) == 0 {
			bad.HugepageLimits = []spec.HugepageLimit{{PageSize: "2MB"}}
		}
	} else if !cgroupV2() {
		bad, want = spec.Resources{Unified: map[string]string{"memory.high": "max"}}, "unified memory.high"
	}
	_, err = m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "strict", Rootfs: overlay(t),
		Spec: spec.Container{Args: []string{"true"}, Resources: bad},
	})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), want) {
		t.Fatalf("create with %+v: %v, want FailedPrecondition naming %q", bad, err, want)
	}
	if cs := m.ListContainers(); len(cs) != 0 {
		t.Errorf("containers after the refused creation: %v", cs)
	}

	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "300"}, mem: 32 << 20})
	start(t, m, c.ID)
	if err := m.UpdateContainerResources(t.Context(), c.ID, bad); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update with %+v: %v, want FailedPrecondition", bad, err)
	}
}

// TestPodPidsLimitRoot: the kubelet creates the pod's cgroup and sets its
// pids.max (podPidsLimit) before RunPodSandbox. Berth's containers go
// below it and are held to it; exec still works within it; removing the
// pod leaves the kubelet's cgroup and its limit alone.
func TestPodPidsLimitRoot(t *testing.T) {
	needRoot(t)
	parent := cgroupParent()
	pidsDir := filepath.Join("/sys/fs/cgroup/pids", parent)
	limitFile := "pids.max"
	if cgroupV2() {
		pidsDir = filepath.Join("/sys/fs/cgroup", parent)
	}
	// As the kubelet's cgroupfs manager does: the pod cgroup in every
	// hierarchy, then its limit.
	var made []string
	if cgroupV2() {
		made = []string{pidsDir}
	} else {
		made, _ = filepath.Glob("/sys/fs/cgroup/*")
		for i := range made {
			made[i] = filepath.Join(made[i], parent)
		}
	}
	for _, d := range made {
		if err := os.Mkdir(d, 0o755); err != nil && filepath.Dir(d) == filepath.Dir(pidsDir) {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range made {
			os.Remove(d)
		}
	})
	const limit = 16
	if err := os.WriteFile(filepath.Join(pidsDir, limitFile), []byte(strconv.Itoa(limit)), 0o644); err != nil {
		t.Fatal(err)
	}

	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{CgroupParent: parent})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "300"}})
	start(t, m, c.ID)
	if got := execOut(t, m, c.ID, "echo", "ok"); got != "ok" {
		t.Fatalf("exec under the pod's pids limit = %q", got)
	}
	// 40 sleeps cannot all start under a limit of 16 for the whole pod.
	out, _, _, err := m.ExecSync(t.Context(), c.ID, []string{"sh", "-c", "n=0; for i in $(seq 40); do sleep 60 & n=$((n+1)); done 2>&1; echo started $n"}, 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := os.ReadFile(filepath.Join(pidsDir, "pids.current"))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(cur))); n > limit || n == 0 {
		t.Errorf("pids.current of the pod = %d, limit %d", n, limit)
	}
	if !strings.Contains(string(out), "can't fork") && !strings.Contains(string(out), "Resource temporarily unavailable") {
		t.Errorf("forking past the pod's limit did not fail: %q", out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.RemoveContainer(ctx, c.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveSandbox(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(pidsDir, limitFile))
	if err != nil || strings.TrimSpace(string(b)) != strconv.Itoa(limit) {
		t.Errorf("the kubelet's pod cgroup after removal: %q, %v", b, err)
	}
}
