package runtime_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"context"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// BenchmarkExec runs `true` in a standalone container with Docker's
// default seccomp profile through its shim: what one healthcheck probe
// costs the caller (berthd); the shim's and runc's share is theirs.
func BenchmarkExec(b *testing.B) {
	needRoot(b)
	ctx := b.Context()
	m, err := berthruntime.Open(ctx, testConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	sb, err := m.CreateSandbox(ctx, berthruntime.SandboxConfig{Name: "bench-exec", Namespace: "bench", CgroupParent: cgroupParent()})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		m.RemoveSandbox(ctx, sb.ID)
	}()
	d := b.TempDir()
	os.Mkdir(filepath.Join(d, "upper"), 0o755)
	os.Mkdir(filepath.Join(d, "work"), 0o755)
	mounts := []berthruntime.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + lowerDir, "upperdir=" + d + "/upper", "workdir=" + d + "/work"}}}
	c, err := m.CreateContainer(ctx, berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "c", Rootfs: mounts,
		Spec: spec.Container{Args: []string{"sleep", "1000"}, Seccomp: spec.Seccomp{Kind: spec.SeccompRuntimeDefault}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := m.StartContainer(ctx, c.ID); err != nil {
		b.Fatal(err)
	}
	ctr, err := m.Container(c.ID)
	if err != nil {
		b.Fatal(err)
	}
	// The init's parent is its shim, the subreaper that reaps berth-runc,
	// runc's init stages and the exec'd process: their CPU time adds up in
	// its children's times.
	shimPid := statField(b, ctr.Pid, 1)
	var before, after syscall.Rusage
	shimBefore := statField(b, shimPid, 13) + statField(b, shimPid, 14)
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	for b.Loop() {
		if code, err := m.Exec(ctx, c.ID, berthruntime.ExecOptions{Cmd: []string{"true"}}); err != nil || code != 0 {
			b.Fatalf("exec: %d %v", code, err)
		}
	}
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	// This process's own CPU time (the caller's, berthd's share), not the
	// shim's or runc's.
	cpu := time.Duration(after.Utime.Nano()+after.Stime.Nano()-before.Utime.Nano()-before.Stime.Nano()) * time.Nanosecond
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us/op")
	// The shim's children: berth-runc exec, runc init (where libcontainer
	// loads the seccomp filter) and `true`. Clock ticks of 10 ms: run
	// with -benchtime 50x or more.
	children := time.Duration(statField(b, shimPid, 13)+statField(b, shimPid, 14)-shimBefore) * 10 * time.Millisecond
	b.ReportMetric(float64(children.Microseconds())/float64(b.N), "shim-children-cpu-us/op")
}

// statField returns field n (0-based after the command name: 1 is the
// parent's PID, 13 and 14 cutime and cstime) of /proc/pid/stat.
func statField(b *testing.B, pid, n int) int {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	f := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	v, err := strconv.Atoi(f[n])
	if err != nil {
		b.Fatal(err)
	}
	return v
}
