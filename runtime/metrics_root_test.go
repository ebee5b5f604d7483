package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestContainerMetricsOfBusyContainer runs a pod whose container spins on
// a CPU and checks that the metrics are read, not made up: CPU time grows
// between two calls, memory and processes are seen, the file the
// container wrote counts in its writable layer.
func TestContainerMetricsOfBusyContainer(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "dd if=/dev/zero of=/big bs=64k count=16 2>/dev/null; while :; do :; done"}})
	idle := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "60"}})
	start(t, m, c.ID)

	// A created container has no cgroup figures yet.
	if _, err := m.ContainerMetrics(t.Context(), idle.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("metrics of a created container: %v, want FailedPrecondition", err)
	}

	var first *berthruntime.ContainerMetrics
	waitFor(t, func() bool {
		var err error
		first, err = m.ContainerMetrics(t.Context(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return first.Filesystem.UsedBytes >= 1<<20
	})
	// A spinning loop gains 100 ms of CPU time: in 100 ms on an idle
	// machine, later on a loaded one (2 cores shared with other tests),
	// which is why this waits rather than sleeps a fixed time.
	var second *berthruntime.ContainerMetrics
	waitFor(t, func() bool {
		var err error
		second, err = m.ContainerMetrics(t.Context(), c.ID)
		if err != nil {
			t.Fatal(err)
		}
		return second.CPU.Usage >= first.CPU.Usage+uint64(100*time.Millisecond)
	})
	if second.CPU.User <= first.CPU.User {
		t.Errorf("user cpu time did not grow: %+v then %+v", first.CPU, second.CPU)
	}
	if !second.Timestamp.After(first.Timestamp) {
		t.Errorf("timestamps %v then %v", first.Timestamp, second.Timestamp)
	}
	t.Logf("metrics: cpu %+v memory %+v processes %+v filesystem %+v", second.CPU, second.Memory, second.Processes, second.Filesystem)
	mem := second.Memory
	if mem.Usage == 0 || mem.WorkingSet == 0 || mem.RSS == 0 || mem.MaxUsage < mem.Usage || mem.Limit == 0 {
		t.Errorf("memory: %+v", mem)
	}
	if second.CPU.Shares == 0 || second.CPU.Period == 0 {
		t.Errorf("cpu settings not read back: %+v", second.CPU)
	}
	// sh, stdio from the shim.
	p := second.Processes
	if p.Processes != 1 || p.Threads != 1 || p.FileDescriptors < 3 {
		t.Errorf("processes: %+v", p)
	}
	fs := second.Filesystem
	if fs.UsedInodes < 2 || fs.CapacityBytes == 0 || fs.Inodes == 0 || fs.Device == "" {
		t.Errorf("filesystem: %+v", fs)
	}
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err != nil && second.Pressure != nil {
		t.Errorf("pressure figures on cgroup v1: %+v", second.Pressure)
	}
	if !slices.ContainsFunc(second.Ulimits, func(u berthruntime.Ulimit) bool { return u.Name == "max_open_files" && u.Soft > 0 }) {
		t.Errorf("no open files limit in %+v", second.Ulimits)
	}
	if second.StartedAt.IsZero() {
		t.Error("no start time")
	}

	sm, err := m.SandboxMetrics(t.Context(), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(sm.Containers) != 1 || sm.Containers[0].ID != c.ID {
		t.Fatalf("pod metrics hold %d containers, want only the running %s", len(sm.Containers), c.ID)
	}
	if sm.Containers[0].CPU.Usage < second.CPU.Usage {
		t.Errorf("pod metrics read CPU %d after %d", sm.Containers[0].CPU.Usage, second.CPU.Usage)
	}
}

// BenchmarkContainerMetrics measures one container's read as
// ListPodSandboxMetrics does it: the shim's cgroup read, /proc and the
// writable layer.
func BenchmarkContainerMetrics(b *testing.B) {
	needRoot(b)
	m, err := berthruntime.Open(b.Context(), testConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	sb, err := m.CreateSandbox(b.Context(), berthruntime.SandboxConfig{Name: "bench-metrics", Namespace: "test", CgroupParent: cgroupParent()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.RemoveSandbox(context.WithoutCancel(b.Context()), sb.ID)
	dir := b.TempDir()
	for _, s := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(dir, s), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	c, err := m.CreateContainer(b.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "sleeper",
		Rootfs: []berthruntime.Mount{{Type: "overlay", Source: "overlay", Options: []string{
			"lowerdir=" + lowerDir, "upperdir=" + filepath.Join(dir, "upper"), "workdir=" + filepath.Join(dir, "work"),
		}}},
		Spec: spec.Container{Args: []string{"sleep", "600"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer m.RemoveContainer(context.WithoutCancel(b.Context()), c.ID)
	if err := m.StartContainer(b.Context(), c.ID); err != nil {
		b.Fatal(err)
	}
	defer m.StopContainer(context.WithoutCancel(b.Context()), c.ID, 0)
	b.Run("metrics", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.ContainerMetrics(b.Context(), c.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
	// The stats read (ContainerStats) for comparison.
	b.Run("stats", func(b *testing.B) {
		for b.Loop() {
			if _, err := m.ContainerStats(b.Context(), c.ID); err != nil {
				b.Fatal(err)
			}
		}
	})
}
