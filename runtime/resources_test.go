package runtime

import (
	"context"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/runtime/spec"
)

func ptr[T any](v T) *T { return &v }

// What the kubelet v1.37 sends for a burstable container on each kind of
// host (hugepage limits of 0 for every page size the kernel has, swap as it
// detects it, memory.high=max and memory.oom.group on v2).
func kubeletResources(v2 bool) spec.Resources {
	r := spec.Resources{
		CPUShares: 102, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20,
		HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}},
	}
	if v2 {
		r.Unified = map[string]string{"memory.high": "max", "memory.oom.group": "1", "memory.swap.max": "0"}
	} else {
		r.MemorySwap = ptr(int64(64 << 20))
	}
	return r
}

func controllers(cs ...string) map[string]bool {
	m := map[string]bool{}
	for _, c := range cs {
		m[c] = true
	}
	return m
}

func TestFitResources(t *testing.T) {
	pages := controllers("2MB", "1GB")
	// This machine: v1 hierarchies for all but hugetlb (which only the
	// unused cgroup2 mount has), memsw on.
	hybrid := hostCgroups{controllers: controllers("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"), swap: true, cfs: true, hugepageSizes: pages}
	v1Full := hybrid
	v1Full.controllers = controllers("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "hugetlb")
	// Debian's and Ubuntu's v1 default: no swapaccount.
	v1NoSwap := v1Full
	v1NoSwap.swap = false
	v2 := hostCgroups{v2: true, controllers: controllers("cpuset", "cpu", "io", "memory", "hugetlb", "pids"), swap: true, cfs: true, hugepageSizes: pages}
	v2Bare := hostCgroups{v2: true, controllers: controllers("cpu", "memory", "pids"), cfs: true, hugepageSizes: pages}
	minimal := hostCgroups{controllers: controllers("memory"), swap: true}

	for _, tc := range []struct {
		name    string
		host    hostCgroups
		in      spec.Resources
		want    spec.Resources
		dropped []string
	}{
		{
			name: "hybrid without hugetlb: hugepage limits go, the rest stays",
			host: hybrid, in: kubeletResources(false),
			want:    spec.Resources{CPUShares: 102, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, MemorySwap: ptr(int64(64 << 20))},
			dropped: []string{"hugepage limits (no hugetlb cgroup controller)"},
		},
		{
			name: "v1 with hugetlb: all applied",
			host: v1Full, in: kubeletResources(false), want: kubeletResources(false),
		},
		{
			name: "v1 without swap accounting: the swap limit goes and none is defaulted",
			host: v1NoSwap, in: kubeletResources(false),
			want: spec.Resources{CPUShares: 102, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimit: 64 << 20, NoSwapLimit: true,
				HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB"}, {PageSize: "1GB"}}},
			dropped: []string{"memory+swap limit (no swap accounting)"},
		},
		{
			name: "v1 without swap accounting, no swap asked: nothing reported",
			host: v1NoSwap, in: spec.Resources{MemoryLimit: 1 << 20},
			want: spec.Resources{MemoryLimit: 1 << 20, NoSwapLimit: true},
		},
		{
			name: "unified on v1: dropped",
			host: v1Full, in: spec.Resources{Unified: map[string]string{"memory.high": "max", "io.weight": "100"}},
			want:    spec.Resources{},
			dropped: []string{"unified io.weight, memory.high (cgroup v1 host)"},
		},
		{
			name: "v2: the kubelet's resources all applied",
			host: v2, in: kubeletResources(true), want: kubeletResources(true),
		},
		{
			name: "v2 without hugetlb, io or swap: those go, cgroup.* core files stay",
			host: v2Bare,
			in: spec.Resources{MemoryLimit: 1 << 20, HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB"}},
				Unified: map[string]string{"memory.high": "max", "memory.swap.max": "0", "io.weight": "100", "cgroup.freeze": "0"}},
			want: spec.Resources{MemoryLimit: 1 << 20, NoSwapLimit: true, Unified: map[string]string{"memory.high": "max", "cgroup.freeze": "0"}},
			dropped: []string{
				"hugepage limits (no hugetlb cgroup controller)",
				"unified io.weight (no io cgroup controller)",
				"unified memory.swap.max (no swap accounting)",
			},
		},
		{
			name: "v2: unified with only unavailable keys becomes nil",
			host: v2Bare, in: spec.Resources{Unified: map[string]string{"io.max": "8:0 rbps=1"}},
			want: spec.Resources{}, dropped: []string{"unified io.max (no io cgroup controller)"},
		},
		{
			name: "a page size the host does not have",
			host: v1Full, in: spec.Resources{HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "16GB"}}},
			want:    spec.Resources{HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}}},
			dropped: []string{"hugepage limit 16GB (no such page size on this host)"},
		},
		{
			name: "cpuset, cpu, pids without their controllers; no CFS",
			host: minimal,
			in:   spec.Resources{CPUShares: 2, CPUQuota: 1000, CPUPeriod: 100000, CpusetCpus: "0", CpusetMems: "0", PidsLimit: 10, MemoryLimit: 1 << 20},
			want: spec.Resources{MemoryLimit: 1 << 20},
			dropped: []string{
				"cpu shares (no cpu cgroup controller)",
				"cpu quota and period (no cpu cgroup controller)",
				"cpuset (no cpuset cgroup controller)",
				"pids limit (no pids cgroup controller)",
			},
		},
		{
			name: "cpu without CFS bandwidth: shares stay",
			host: hostCgroups{controllers: controllers("cpu", "memory"), swap: true},
			in:   spec.Resources{CPUShares: 2, CPUQuota: 1000},
			want: spec.Resources{CPUShares: 2}, dropped: []string{"cpu quota and period (no CFS bandwidth control in the kernel)"},
		},
		{
			name: "no memory controller",
			host: hostCgroups{controllers: controllers("cpu")},
			in:   spec.Resources{MemoryLimit: 1 << 20, MemorySwap: ptr(int64(2 << 20))},
			want: spec.Resources{}, dropped: []string{"memory limit (no memory cgroup controller)"},
		},
		{
			name: "nothing asked, nothing dropped",
			host: minimal, in: spec.Resources{}, want: spec.Resources{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, dropped := tc.host.fit(tc.in)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("fit = %+v\nwant  %+v", got, tc.want)
			}
			if !reflect.DeepEqual(dropped, tc.dropped) {
				t.Errorf("dropped = %q\nwant      %q", dropped, tc.dropped)
			}
			// What fit keeps, Generate accepts.
			if _, err := spec.Generate(spec.Container{Args: []string{"true"}, Rootfs: t.TempDir(), Resources: got}); err != nil {
				t.Errorf("Generate refuses the fitted resources: %v", err)
			}
		})
	}
}

func TestFitResourcesStrict(t *testing.T) {
	hybrid := hostCgroups{controllers: controllers("cpu", "memory", "pids", "cpuset"), swap: true, cfs: true}
	in := kubeletResources(false)
	ctx := context.Background()

	m := &Manager{state: &state{cgroups: hybrid}}
	got, err := m.fitResources(ctx, "c1", in)
	if err != nil || got.HugepageLimits != nil || got.MemoryLimit != in.MemoryLimit {
		t.Fatalf("tolerant fit = %+v, %v", got, err)
	}
	m.cfg.StrictResources = true
	_, err = m.fitResources(ctx, "c1", in)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "hugepage limits (no hugetlb cgroup controller)") {
		t.Fatalf("strict fit error = %v, want FailedPrecondition naming the hugepage limits", err)
	}
	// Strict refuses only what cannot be applied.
	if _, err := m.fitResources(ctx, "c1", spec.Resources{MemoryLimit: 1 << 20}); err != nil {
		t.Fatalf("strict fit of applicable limits: %v", err)
	}
}

func TestHugepageSize(t *testing.T) {
	for in, want := range map[string]string{
		"hugepages-2048kB": "2MB", "hugepages-1048576kB": "1GB", "hugepages-64kB": "64KB",
		"hugepages-32768kB": "32MB", "hugepages-16777216kB": "16GB", "hugepages-1536kB": "1536KB",
	} {
		if got, ok := hugepageSize(in); !ok || got != want {
			t.Errorf("hugepageSize(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, bad := range []string{"hugepages-", "hugepages-0kB", "hugepages-2048", "other-2048kB"} {
		if got, ok := hugepageSize(bad); ok {
			t.Errorf("hugepageSize(%q) = %q, want not ok", bad, got)
		}
	}
}

func TestV1Mounts(t *testing.T) {
	const mi = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
35 30 0:31 / /sys/fs/cgroup/cpuset rw,relatime shared:14 - cgroup cgroup rw,cpuset,clone_children
`
	want := map[string]string{
		"pids": "/sys/fs/cgroup/pids", "cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
		"cpuset": "/sys/fs/cgroup/cpuset",
	}
	if got := v1Mounts(mi); !reflect.DeepEqual(got, want) {
		t.Errorf("v1Mounts = %v, want %v", got, want)
	}
}

// The probe on the machine the tests run on must agree with the kernel.
func TestProbeCgroups(t *testing.T) {
	h := probeCgroups()
	if h.v2 != fileExists("/sys/fs/cgroup/cgroup.controllers") {
		t.Errorf("v2 = %v, but cgroup.controllers exists = %v", h.v2, !h.v2) // they disagree
	}
	if !h.controllers["memory"] || !h.controllers["cpu"] {
		t.Errorf("controllers %v lack memory or cpu", h.controllers)
	}
	for s := range h.hugepageSizes {
		if !strings.HasSuffix(s, "B") {
			t.Errorf("page size %q", s)
		}
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
