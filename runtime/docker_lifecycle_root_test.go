package runtime_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/testutil"
	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestRecreateExitedContainer: an exited container runs again with a new
// shim on the same rootfs (its writable layer keeps what the first run
// wrote), its log grows, and it can be recreated again after that.
func TestRecreateExitedContainer(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	logPath := filepath.Join(t.TempDir(), "c.log")
	c := newContainer(t, m, sb, ctrOpts{log: logPath, args: []string{"sh", "-c", "echo run; cat /count 2>/dev/null; echo x >> /count; exit 3"}})

	if err := m.RecreateContainer(t.Context(), c.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("recreate of a created container: %v, want FailedPrecondition", err)
	}
	start(t, m, c.ID)
	first := waitExit(t, m, events, c.ID)
	if first.ExitCode != 3 {
		t.Fatalf("first run exit %d", first.ExitCode)
	}
	oldShim := shimPid(t, first)
	for i := range 2 {
		if err := m.RecreateContainer(t.Context(), c.ID); err != nil {
			t.Fatal(err)
		}
		got, err := m.Container(c.ID)
		if err != nil || got.State != berthruntime.ContainerCreated || got.ExitCode != 0 || got.Reason != "" {
			t.Fatalf("after recreate: %+v %v", got, err)
		}
		if p := shimPid(t, got); p == oldShim || !alive(p) {
			t.Errorf("run %d: shim pid %d (previous %d) should be a new live shim", i+2, p, oldShim)
		}
		if alive(oldShim) {
			t.Errorf("the previous shim %d still runs", oldShim)
		}
		oldShim = shimPid(t, got)
		start(t, m, c.ID)
		if e := waitExit(t, m, events, c.ID); e.ExitCode != 3 {
			t.Fatalf("run %d exit %d", i+2, e.ExitCode)
		}
	}
	b, _ := os.ReadFile(logPath)
	if n := strings.Count(string(b), "stdout F run"); n != 3 {
		t.Errorf("log has %d runs, want 3:\n%s", n, b)
	}
	if n := strings.Count(string(b), "stdout F x"); n != 3 {
		t.Errorf("the writable layer did not carry over between runs (%d x lines, want 1+2=3):\n%s", n, b)
	}
}

func shimPid(t *testing.T, c *berthruntime.Container) int {
	t.Helper()
	var pid int
	for _, d := range []string{filepath.Join(stateRoot, "c", c.ID[:12]), filepath.Join(stateRoot, "c", c.ID)} {
		if b, err := os.ReadFile(filepath.Join(d, "shim.pid")); err == nil {
			_, _ = fmt.Sscan(string(b), &pid)
			return pid
		}
	}
	t.Fatalf("no shim.pid for %s", c.ID)
	return 0
}

// TestPauseResume: a paused container's processes are frozen (its output
// stops), exec is refused, resume brings it back, and SIGKILL ends a
// paused container.
func TestPauseResume(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	logPath := filepath.Join(t.TempDir(), "c.log")
	c := newContainer(t, m, sb, ctrOpts{log: logPath, args: []string{"sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.05; done"}})
	if err := m.PauseContainer(t.Context(), c.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("pause of a created container: %v", err)
	}
	start(t, m, c.ID)
	waitFor(t, func() bool { b, _ := os.ReadFile(logPath); return strings.Count(string(b), "\n") > 2 })
	if err := m.PauseContainer(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Container(c.ID); !got.Paused {
		t.Error("not reported paused")
	}
	if err := m.PauseContainer(t.Context(), c.ID); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Errorf("second pause: %v", err)
	}
	time.Sleep(100 * time.Millisecond)
	b1, _ := os.ReadFile(logPath)
	time.Sleep(400 * time.Millisecond)
	b2, _ := os.ReadFile(logPath)
	if len(b1) != len(b2) {
		t.Errorf("output went on while paused: %d -> %d bytes", len(b1), len(b2))
	}
	if _, _, _, err := m.ExecSync(t.Context(), c.ID, []string{"true"}, 5*time.Second); err == nil {
		t.Error("exec in a paused container succeeded")
	}
	if err := m.ResumeContainer(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b, _ := os.ReadFile(logPath); return len(b) > len(b2) })
	if err := m.PauseContainer(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if err := m.StopContainer(ctx, c.ID, 0); err != nil {
		t.Fatalf("kill a paused container: %v", err)
	}
	if got := waitExit(t, m, events, c.ID); got.Paused || got.ExitCode != 137 {
		t.Errorf("after kill: paused %v exit %d", got.Paused, got.ExitCode)
	}
}

// TestAttachBeforeStart: Docker attaches to a created container and then
// starts it; output from the very first instruction reaches the stream.
func TestAttachBeforeStart(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "early", Rootfs: overlay(t), Stdin: true, StdinOnce: true,
		Spec: spec.Container{Args: []string{"sh", "-c", "echo first; read line; echo got $line"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveContainer(context.Background(), c.ID) })
	var out testutil.Buffer
	attached := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- m.Attach(t.Context(), c.ID, berthruntime.Streams{
			Stdin: strings.NewReader("hello\n"), Stdout: &out,
			Attached: func() { close(attached) },
		})
	}()
	select {
	case <-attached:
	case <-time.After(10 * time.Second):
		t.Fatal("attach never acknowledged")
	}
	start(t, m, c.ID)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("attach did not end with the container")
	}
	if got := out.String(); got != "first\ngot hello\n" {
		t.Errorf("attached output %q", got)
	}
}
