package shim_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// Environment of the helper processes this test binary re-executes as.
const helperEnv = "BERTH_SHIM_TEST_HELPER"

var (
	shimBinary string
	testRoot   string
	// cgroupParent is this run's own parent: nothing else lives there.
	cgroupParent = fmt.Sprintf("/berth-test-%d", os.Getpid())
)

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	if os.Geteuid() != 0 {
		// Every test skips itself with needRoot.
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "berth-shim-test-")
	if err != nil {
		panic(err)
	}
	testRoot = dir
	if shimBinary, err = shimbuild.Build(dir); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	if err := leftovers(dir); err != nil {
		fmt.Println("leftovers after the tests:", err)
		code = 1
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

func needRoot(t testing.TB) {
	testutil.RequireRoot(t, "runs real containers (namespaces, mounts, cgroups) through berth-shim")
}

// leftovers finds mounts, processes and cgroups the tests left behind.
func leftovers(dir string) error {
	var found []string
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, dir) {
			found = append(found, "mount: "+l)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		exe, err := os.Readlink(filepath.Join(p, "exe"))
		if err == nil && strings.HasPrefix(exe, dir) {
			found = append(found, "process: "+p+" "+exe)
		}
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
	for _, c := range cgs {
		found = append(found, "cgroup: "+c)
	}
	if len(found) > 0 {
		return errors.New(strings.Join(found, "\n"))
	}
	return nil
}

// bundle writes a busybox rootfs and a config.json running args.
func bundle(t testing.TB, name string, args []string, mutate ...func(*specs.Spec)) string {
	t.Helper()
	b := filepath.Join(testRoot, "bundles", name)
	rootfs := filepath.Join(b, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "echo", "sleep", "cat", "true", "false", "tty", "stty", "ls", "id", "hostname", "grep", "tr", "unshare"} {
		if err := os.Symlink("busybox", filepath.Join(rootfs, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	spec := baseSpec(name, args)
	for _, f := range mutate {
		f(spec)
	}
	js, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "config.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b) })
	return b
}

func baseSpec(name string, args []string) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin", "TERM=xterm"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Hostname: "shimtest",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupParent + "/" + name,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

type ctr struct {
	*shim.Client
	bundle, state, log string
}

func start(t *testing.T, name string, args []string, o shim.StartOptions, mutate ...func(*specs.Spec)) ctr {
	t.Helper()
	return startWith(t, nil, name, args, o, mutate...)
}

// startWith is start through l, or the cold way when l is nil.
func startWith(t *testing.T, l *shim.Launcher, name string, args []string, o shim.StartOptions, mutate ...func(*specs.Spec)) ctr {
	t.Helper()
	c := ctr{bundle: bundle(t, name, args, mutate...), state: filepath.Join(testRoot, "s", name), log: filepath.Join(testRoot, "logs", name+".log")}
	if err := os.MkdirAll(filepath.Dir(c.log), 0o755); err != nil {
		t.Fatal(err)
	}
	o.Binary, o.ID, o.Bundle, o.StateDir, o.LogPath = shimBinary, name, c.bundle, c.state, c.log
	var cl *shim.Client
	var err error
	if l != nil {
		cl, err = l.Start(t.Context(), o)
	} else {
		cl, err = shim.Start(t.Context(), o)
	}
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	c.Client = cl
	t.Cleanup(func() { cleanup(t, c) })
	return c
}

func cleanup(t testing.TB, c ctr) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Delete(ctx, shim.DeleteOptions{Force: true}); err != nil {
		t.Errorf("delete %s: %v", c.state, err)
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Errorf("shutdown %s: %v", c.state, err)
	}
	// The shim removes its socket on the way out; wait for it to be gone.
	waitFor(t, 5*time.Second, func() bool { return !alive(c.ShimPid()) })
	if _, err := shim.Connect(ctx, c.state); !errdefs.IsUnavailable(err) {
		t.Errorf("connect to a shim that shut down = %v, want unavailable", err)
	}
	os.RemoveAll(c.state)
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie is dead for our purposes (its parent may be the test).
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func waitFor(t testing.TB, d time.Duration, cond func() bool) {
	t.Helper()
	end := time.Now().Add(d)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func wait(t *testing.T, c ctr) wire.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	e, err := c.Wait(ctx)
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return e
}

var logLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([FP]) (.*)$`)

// readLog parses the CRI log into "stream tag content" strings.
func readLog(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if l == "" {
			continue
		}
		m := logLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("log line %q is not in CRI format", l)
		}
		if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
			t.Fatalf("log line %q: timestamp: %v", l, err)
		}
		out = append(out, m[2]+" "+m[3]+" "+m[4])
	}
	return out
}

func TestOutputLandsInCRILogAndExitIsRecorded(t *testing.T) {
	needRoot(t)
	long := strings.Repeat("x", 20000)
	c := start(t, "logs", []string{"sh", "-c", "echo hello; echo oops >&2; echo " + long + "; exit 3"}, shim.StartOptions{})
	e := wait(t, c)
	if e.Code != 3 || e.Signal != 0 || e.OOMKilled {
		t.Fatalf("exit = %+v, want code 3", e)
	}
	if e.FinishedAt.Before(e.StartedAt) || e.StartedAt.IsZero() {
		t.Fatalf("exit times = %v .. %v", e.StartedAt, e.FinishedAt)
	}
	rec, err := shim.ReadExit(c.state)
	if err != nil || rec.Code != 3 || rec.Pid != c.Pid() {
		t.Fatalf("ReadExit = %+v, %v; want code 3 pid %d", rec, err, c.Pid())
	}
	lines := readLog(t, c.log)
	var stdout []string
	for _, l := range lines {
		if strings.HasPrefix(l, "stdout") {
			stdout = append(stdout, l)
		}
	}
	want := []string{"stdout F hello", "stdout P " + long[:16384], "stdout F " + long[16384:]}
	if strings.Join(stdout, "\n") != strings.Join(want, "\n") {
		t.Errorf("stdout log lines: got %d lines %.80q, want %d", len(stdout), stdout, len(want))
	}
	if !contains(lines, "stderr F oops") {
		t.Errorf("stderr line missing from %q", lines)
	}
	s, err := c.State(t.Context())
	if err != nil || s.Status != wire.StatusStopped || s.Exit == nil {
		t.Fatalf("state = %+v, %v", s, err)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func TestKillIsRecordedAsSignal(t *testing.T) {
	needRoot(t)
	c := start(t, "kill", []string{"sleep", "1000"}, shim.StartOptions{})
	s, err := c.State(t.Context())
	if err != nil || s.Status != wire.StatusRunning {
		t.Fatalf("state = %+v, %v", s, err)
	}
	if err := c.Signal(t.Context(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	e := wait(t, c)
	if e.Code != 137 || e.Signal != int(syscall.SIGKILL) {
		t.Fatalf("exit = %+v, want 137 / SIGKILL", e)
	}
	if err := c.Signal(t.Context(), syscall.SIGKILL); !errdefs.IsNotFound(err) {
		t.Fatalf("signal of an exited container = %v, want not found", err)
	}
}

func TestCreateOnlyThenStart(t *testing.T) {
	needRoot(t)
	c := start(t, "created", []string{"sh", "-c", "echo started"}, shim.StartOptions{CreateOnly: true})
	s, err := c.State(t.Context())
	if err != nil || s.Status != wire.StatusCreated {
		t.Fatalf("state = %+v, %v; want created", s, err)
	}
	if _, err := shim.ReadExit(c.state); !errdefs.IsNotFound(err) {
		t.Fatalf("ReadExit before start = %v, want not found", err)
	}
	if _, err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c); e.Code != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if l := readLog(t, c.log); !contains(l, "stdout F started") {
		t.Fatalf("log = %q", l)
	}
	if _, err := c.Start(t.Context()); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second start = %v, want failed precondition", err)
	}
}

// TestStartedContainerIsRunningForLibcontainer checks that the shim's own
// start (it opens libcontainer's exec fifo instead of running berth-runc)
// leaves the container as libcontainer's Exec would: fifo gone, so that
// berth-runc's later runs see it running and can exec, read stats and kill.
func TestStartedContainerIsRunningForLibcontainer(t *testing.T) {
	needRoot(t)
	c := start(t, "fifo", []string{"sleep", "100"}, shim.StartOptions{CreateOnly: true})
	fifo := filepath.Join(c.state, "libcontainer", "fifo", "exec.fifo")
	if _, err := os.Stat(fifo); err != nil {
		t.Fatalf("created container has no exec fifo: %v", err)
	}
	if _, err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(fifo); !os.IsNotExist(err) {
		t.Fatalf("exec fifo after start: %v, want gone", err)
	}
	var out bytes.Buffer
	e, err := c.Exec(t.Context(), shim.ExecOptions{Process: specs.Process{Args: []string{"echo", "in"}, Cwd: "/", Env: []string{"PATH=/bin"}}, Streams: shim.Streams{Stdout: &out}})
	if err != nil || e.Code != 0 || out.String() != "in\n" {
		t.Fatalf("exec after start = %+v, %q, %v", e, out.String(), err)
	}
	if st, err := c.Stats(t.Context()); err != nil || st.Pids == 0 {
		t.Fatalf("stats after start = %+v, %v", st, err)
	}
	if err := c.Signal(t.Context(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c); e.Signal != int(syscall.SIGKILL) || e.StartedAt.IsZero() {
		t.Fatalf("exit = %+v, want SIGKILL after a start", e)
	}
}

// TestStartAfterInitDied: a created container whose init was killed cannot
// be started, and saying so does not hang.
func TestStartAfterInitDied(t *testing.T) {
	needRoot(t)
	c := start(t, "dead", []string{"true"}, shim.StartOptions{CreateOnly: true})
	if err := c.Signal(t.Context(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Start(ctx); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("start after the init died = %v, want failed precondition", err)
	}
}

func TestExec(t *testing.T) {
	needRoot(t)
	c := start(t, "exec", []string{"sleep", "1000"}, shim.StartOptions{})
	var out, errb bytes.Buffer
	e, err := c.Exec(t.Context(), shim.ExecOptions{
		Process: specs.Process{Args: []string{"sh", "-c", "echo out; hostname; echo err >&2; exit 5"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Streams: shim.Streams{Stdout: &out, Stderr: &errb},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != 5 || out.String() != "out\nshimtest\n" || errb.String() != "err\n" {
		t.Fatalf("exec: exit %+v stdout %q stderr %q", e, out.String(), errb.String())
	}

	out.Reset()
	e, err = c.Exec(t.Context(), shim.ExecOptions{
		Process: specs.Process{Args: []string{"cat"}, Env: []string{"PATH=/bin"}, Cwd: "/"},
		Streams: shim.Streams{Stdin: strings.NewReader("from stdin"), Stdout: &out},
	})
	if err != nil || e.Code != 0 || out.String() != "from stdin" {
		t.Fatalf("exec cat: exit %+v, %v, stdout %q", e, err, out.String())
	}

	// An exec whose caller goes away is killed, not left behind.
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err = c.Exec(ctx, shim.ExecOptions{Process: specs.Process{Args: []string{"sleep", "1000"}, Env: []string{"PATH=/bin"}, Cwd: "/"}})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("exec with expiring context = %v", err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(childrenOf(c.Pid())) == 0 })

	if _, err := c.Exec(t.Context(), shim.ExecOptions{Process: specs.Process{Args: []string{"/nonexistent"}, Cwd: "/"}}); err == nil {
		t.Fatal("exec of a missing binary succeeded")
	}
}

// childrenOf lists the processes whose parent is pid.
func childrenOf(pid int) []int {
	var kids []int
	procs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
			kids = append(kids, n)
		}
	}
	return kids
}

func TestExecTTY(t *testing.T) {
	needRoot(t)
	c := start(t, "exectty", []string{"sleep", "1000"}, shim.StartOptions{})
	var out bytes.Buffer
	e, err := c.Exec(t.Context(), shim.ExecOptions{
		Process: specs.Process{
			Args: []string{"sh", "-c", "tty; stty size; exit 2"}, Env: []string{"PATH=/bin"}, Cwd: "/",
			Terminal: true, ConsoleSize: &specs.Box{Height: 33, Width: 111},
		},
		Streams: shim.Streams{Stdout: &out},
	})
	if err != nil {
		t.Fatal(err)
	}
	if e.Code != 2 || !strings.Contains(out.String(), "/dev/pts/0\r\n") || !strings.Contains(out.String(), "33 111\r\n") {
		t.Fatalf("tty exec: exit %+v output %q", e, out.String())
	}
}

// TestTerminalContainerAttachAndResize runs with a cold shim and with a
// spare one.
func TestTerminalContainerAttachAndResize(t *testing.T) {
	needRoot(t)
	t.Run("cold", func(t *testing.T) { testTerminal(t, nil, "tty") })
	t.Run("spare", func(t *testing.T) { testTerminal(t, warmLauncher(t), "tty-spare") })
}

// warmLauncher returns a Launcher with a spare shim on standby.
func warmLauncher(t *testing.T) *shim.Launcher {
	t.Helper()
	l := shim.NewLauncher(shimBinary)
	t.Cleanup(l.Close)
	startWith(t, l, strings.NewReplacer("/", "-").Replace(t.Name())+"-warmup", []string{"true"}, shim.StartOptions{})
	waitFor(t, 5*time.Second, func() bool { return len(spares(t)) == 1 })
	return l
}

func testTerminal(t *testing.T, l *shim.Launcher, name string) {
	c := startWith(t, l, name, []string{"sh"}, shim.StartOptions{Stdin: true}, func(s *specs.Spec) {
		s.Process.Terminal = true
	})
	if err := c.Resize(t.Context(), wire.Size{Width: 77, Height: 22}); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	var out testutil.Buffer
	done := make(chan wire.Exit, 1)
	go func() {
		e, err := c.Attach(t.Context(), shim.Streams{Stdin: pr, Stdout: &out})
		if err != nil {
			t.Error(err)
		}
		done <- e
	}()
	time.Sleep(200 * time.Millisecond)
	fmt.Fprintf(pw, "stty size; exit 4\n")
	var e wire.Exit
	select {
	case e = <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("attach did not end; output %q", out.String())
	}
	if e.Code != 4 || !strings.Contains(out.String(), "22 77") {
		t.Fatalf("attach: exit %+v output %q", e, out.String())
	}
	if l := readLog(t, c.log); !contains(l, "stdout F 22 77\r") {
		t.Fatalf("log = %q", l)
	}
}

func TestStatsAndUpdate(t *testing.T) {
	needRoot(t)
	c := start(t, "stats", []string{"sleep", "1000"}, shim.StartOptions{})
	limit := int64(64 << 20)
	pids := int64(50)
	if err := c.Update(t.Context(), &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}, Pids: &specs.LinuxPids{Limit: &pids}}); err != nil {
		t.Fatal(err)
	}
	s, err := c.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if s.MemoryLimit != uint64(limit) || s.PidsLimit != 50 || s.Pids == 0 || s.CPUUsage == 0 || s.MemoryUsage == 0 {
		t.Fatalf("stats = %+v", s)
	}
	b, err := os.ReadFile("/sys/fs/cgroup/memory" + cgroupParent + "/stats/memory.limit_in_bytes")
	if err != nil || strings.TrimSpace(string(b)) != strconv.FormatInt(limit, 10) {
		t.Fatalf("memory.limit_in_bytes = %q, %v", b, err)
	}
}

func TestOOMKilled(t *testing.T) {
	needRoot(t)
	c := start(t, "oom", []string{"sh", "-c", "x=a; while true; do x=$x$x; done"}, shim.StartOptions{}, func(s *specs.Spec) {
		limit := int64(16 << 20)
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &limit, Swap: &limit}
	})
	e := wait(t, c)
	if !e.OOMKilled || e.Code != 137 {
		t.Fatalf("exit = %+v, want OOM-killed 137", e)
	}
}

func TestReopenLog(t *testing.T) {
	needRoot(t)
	c := start(t, "reopen", []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo after"}, shim.StartOptions{})
	rotated := c.log + ".1"
	if err := os.Rename(c.log, rotated); err != nil {
		t.Fatal(err)
	}
	if err := c.ReopenLog(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "rootfs/tmp/go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	wait(t, c)
	if l := readLog(t, c.log); !contains(l, "stdout F after") {
		t.Fatalf("new log = %q", l)
	}
	os.Remove(rotated)
}

// TestShimOutlivesItsParent starts the shim from a helper process that
// exits at once: the container keeps running, and its exit is recorded
// with nobody connected.
func TestShimOutlivesItsParent(t *testing.T) {
	needRoot(t)
	name := "orphan"
	b := bundle(t, name, []string{"sh", "-c", "while [ ! -e /tmp/go ]; do sleep 0.05; done; echo done; exit 7"})
	c := ctr{bundle: b, state: filepath.Join(testRoot, "s", name), log: filepath.Join(testRoot, "logs", name+".log")}
	h := exec.Command(os.Args[0])
	h.Env = append(os.Environ(), helperEnv+"=start", "SHIM="+shimBinary, "ID="+name, "BUNDLE="+b, "STATE="+c.state, "LOG="+c.log)
	if out, err := h.CombinedOutput(); err != nil {
		t.Fatalf("helper: %v: %s", err, out)
	}
	cl, err := shim.Connect(t.Context(), c.state)
	if err != nil {
		t.Fatal(err)
	}
	c.Client = cl
	t.Cleanup(func() { cleanup(t, c) })
	s, err := cl.State(t.Context())
	if err != nil || s.Status != wire.StatusRunning {
		t.Fatalf("state after the parent died = %+v, %v", s, err)
	}
	if ppid := parentOf(cl.ShimPid()); ppid == h.Process.Pid {
		t.Fatalf("shim still a child of the dead helper")
	}
	if err := os.WriteFile(filepath.Join(b, "rootfs/tmp/go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var e wire.Exit
	waitFor(t, 10*time.Second, func() bool {
		e, err = shim.ReadExit(c.state)
		return err == nil
	})
	if e.Code != 7 {
		t.Fatalf("recorded exit = %+v, want 7", e)
	}
	if l := readLog(t, c.log); !contains(l, "stdout F done") {
		t.Fatalf("log = %q", l)
	}
}

func parentOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	n, _ := strconv.Atoi(f[1])
	return n
}

// TestClientKilledDoesNotStopContainer kills -9 a process attached to and
// waiting on the container.
func TestClientKilledDoesNotStopContainer(t *testing.T) {
	needRoot(t)
	c := start(t, "client", []string{"sh", "-c", "while true; do echo tick; sleep 0.1; done"}, shim.StartOptions{Stdin: true})
	h := exec.Command(os.Args[0])
	h.Env = append(os.Environ(), helperEnv+"=attach", "STATE="+c.state)
	stdout, err := h.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(stdout, buf); err != nil || string(buf) != "tick" {
		t.Fatalf("helper attach output %q, %v", buf, err)
	}
	if err := h.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = h.Wait()
	n := len(readLog(t, c.log))
	time.Sleep(500 * time.Millisecond)
	s, err := c.State(t.Context())
	if err != nil || s.Status != wire.StatusRunning {
		t.Fatalf("state after the client died = %+v, %v", s, err)
	}
	if m := len(readLog(t, c.log)); m <= n {
		t.Fatalf("container stopped logging: %d lines then %d", n, m)
	}
}

func TestDeleteRemovesCgroups(t *testing.T) {
	needRoot(t)
	c := start(t, "delete", []string{"sleep", "1000"}, shim.StartOptions{})
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent + "/delete")
	if len(dirs) < 5 {
		t.Fatalf("container cgroups = %q, want one per hierarchy", dirs)
	}
	if err := c.Delete(t.Context(), shim.DeleteOptions{}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of a running container without force = %v", err)
	}
	if err := c.Delete(t.Context(), shim.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, d := range dirs {
		if _, err := os.Stat(d); err == nil {
			left = append(left, d)
		}
	}
	parents, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
	left = append(left, parents...)
	sort.Strings(left)
	if len(left) > 0 {
		t.Fatalf("cgroups left after delete: %q", left)
	}
	if e, err := shim.ReadExit(c.state); err != nil || e.Code != 137 {
		t.Fatalf("exit after forced delete = %+v, %v", e, err)
	}
}

func TestBadBundleFailsClearly(t *testing.T) {
	needRoot(t)
	b := bundle(t, "bad", []string{"/no/such/binary"})
	_, err := shim.Start(t.Context(), shim.StartOptions{Binary: shimBinary, ID: "bad", Bundle: b, StateDir: filepath.Join(testRoot, "s", "bad")})
	if err == nil || !strings.Contains(err.Error(), "no/such/binary") {
		t.Fatalf("start with a missing binary = %v", err)
	}
	waitFor(t, 5*time.Second, func() bool {
		pids, _ := os.ReadFile(filepath.Join(testRoot, "s", "bad", wire.PidName))
		n, _ := strconv.Atoi(string(pids))
		return n > 0 && !alive(n)
	})
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent + "/bad"); len(cg) > 0 {
		t.Fatalf("cgroups left by a failed start: %q", cg)
	}
	os.RemoveAll(filepath.Join(testRoot, "s", "bad"))
}

// BenchmarkRunTrue measures create+start+wait of a `true` container
// through the shim, reporting the median as well as the mean.
func BenchmarkRunTrue(b *testing.B) {
	needRoot(b)
	bd := bundle(b, "bench", []string{"true"})
	var ds []time.Duration
	for i := 0; b.Loop(); i++ {
		state := filepath.Join(testRoot, "s", "bench")
		t0 := time.Now()
		c, err := shim.Start(b.Context(), shim.StartOptions{Binary: shimBinary, ID: fmt.Sprintf("bench%d", i), Bundle: bd, StateDir: state})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Wait(b.Context()); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(t0))
		b.StopTimer()
		cleanup(b, ctr{Client: c, state: state})
		b.StartTimer()
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "ms-median")
}

// helper runs in a child process of the test binary.
func helper(kind string) int {
	ctx := context.Background()
	switch kind {
	case "start":
		_, err := shim.Start(ctx, shim.StartOptions{Binary: os.Getenv("SHIM"), ID: os.Getenv("ID"), Bundle: os.Getenv("BUNDLE"), StateDir: os.Getenv("STATE"), LogPath: os.Getenv("LOG")})
		if err != nil {
			fmt.Println(err)
			return 1
		}
		return 0
	case "attach":
		c, err := shim.Connect(ctx, os.Getenv("STATE"))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go func() { _, _ = c.Wait(ctx) }()
		_, err = c.Attach(ctx, shim.Streams{Stdin: os.Stdin, Stdout: os.Stdout})
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 2
}

// TestOrphansComeToShim runs a container sharing the host PID namespace
// whose init leaves a background child: the child is re-parented to the
// shim (child subreaper), and a forced delete kills and reaps it.
func TestOrphansComeToShim(t *testing.T) {
	needRoot(t)
	c := start(t, "orphans", []string{"sh", "-c", "sleep 1000 & echo $!"}, shim.StartOptions{}, func(s *specs.Spec) {
		s.Linux.Namespaces = s.Linux.Namespaces[1:]
	})
	if e := wait(t, c); e.Code != 0 {
		t.Fatalf("exit = %+v", e)
	}
	l := readLog(t, c.log)
	if len(l) != 1 {
		t.Fatalf("log = %q", l)
	}
	pid, err := strconv.Atoi(strings.TrimPrefix(l[0], "stdout F "))
	if err != nil {
		t.Fatal(err)
	}
	if p := parentOf(pid); p != c.ShimPid() {
		t.Fatalf("orphan %d has parent %d, want the shim %d", pid, p, c.ShimPid())
	}
	if err := c.Delete(t.Context(), shim.DeleteOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
		return err != nil
	})
}

// startPause starts the pause mode as PID 1 of a new PID namespace with
// its go-ahead pipe, whose write end it returns.
func startPause(t *testing.T) (*exec.Cmd, *os.File, <-chan error) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := exec.Command(shimBinary, "pause")
	p.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
	p.ExtraFiles = []*os.File{r}
	var stderr bytes.Buffer
	p.Stderr = &stderr
	err = p.Start()
	r.Close()
	if err != nil {
		w.Close()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		err := p.Wait()
		if err != nil {
			err = fmt.Errorf("%w: %s", err, stderr.Bytes())
		}
		done <- err
	}()
	t.Cleanup(func() {
		w.Close()
		p.Process.Kill()
	})
	return p, w, done
}

// TestPauseHoldsPIDNamespace runs the pause mode as PID 1 of a new PID
// namespace, where the kernel drops signals without a handler: given its
// go-ahead, it must stay up (also once berthd's end of the pipe closes),
// then exit 0 on SIGTERM.
func TestPauseHoldsPIDNamespace(t *testing.T) {
	needRoot(t)
	p, goAhead, done := startPause(t)
	if _, err := goAhead.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	goAhead.Close()
	select {
	case err := <-done:
		t.Fatalf("pause exited on its own: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause ignored SIGTERM")
	}
}

// TestPauseWithoutGoAhead: a holder whose go-ahead pipe closes before the
// go-ahead (berthd died before its PID was on record) exits by itself,
// at once; one started without the pipe says so and exits 2.
func TestPauseWithoutGoAhead(t *testing.T) {
	needRoot(t)
	_, goAhead, done := startPause(t)
	select {
	case err := <-done:
		t.Fatalf("pause exited before its go-ahead pipe closed: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	goAhead.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pause exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("pause holds with no go-ahead and nobody left to give it")
	}

	// fd 3 closed for sure: a child inherits whatever the test binary
	// inherited without close-on-exec (flock's lock file, make's jobserver
	// pipe), and the holder would read that as its go-ahead pipe.
	out, err := exec.Command("sh", "-c", `exec 3<&- && exec "$0" pause`, shimBinary).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "go-ahead on fd 3") {
		t.Fatalf("pause without fd 3: %v, %q; want exit 2 naming the go-ahead", err, out)
	}
}

// TestStartCanceledCleansUp cancels Start while the shim creates the
// container: nothing may be left behind (the leftover check in TestMain
// and the cgroup check here).
func TestStartCanceledCleansUp(t *testing.T) {
	needRoot(t)
	b := bundle(t, "canceled", []string{"sleep", "1000"})
	state := filepath.Join(testRoot, "s", "canceled")
	ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
	defer cancel()
	_, err := shim.Start(ctx, shim.StartOptions{Binary: shimBinary, ID: "canceled", Bundle: b, StateDir: state})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("start with an expired context = %v", err)
	}
	waitFor(t, 10*time.Second, func() bool {
		pid, _ := os.ReadFile(filepath.Join(state, wire.PidName))
		n, _ := strconv.Atoi(string(pid))
		return n > 0 && !alive(n)
	})
	if cg, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent + "/canceled"); len(cg) > 0 {
		t.Fatalf("cgroups left by a canceled start: %q", cg)
	}
	os.RemoveAll(state)
}

// BenchmarkShimRSS reports the resident memory of a shim holding a running
// container (the per-container memory cost of the design).
func BenchmarkShimRSS(b *testing.B) {
	needRoot(b)
	bd := bundle(b, "rss", []string{"sleep", "1000"})
	// RssAnon is what each extra shim costs; the file-backed rest (the
	// binary's text) is shared by all shims through the page cache.
	var kb, anon []int
	for i := 0; b.Loop(); i++ {
		state := filepath.Join(testRoot, "s", "rss")
		c, err := shim.Start(b.Context(), shim.StartOptions{Binary: shimBinary, ID: fmt.Sprintf("rss%d", i), Bundle: bd, StateDir: state, LogPath: filepath.Join(state, "ctr.log")})
		if err != nil {
			b.Fatal(err)
		}
		// One round of every cheap call, so the figure is that of a shim
		// that has served, not of a fresh one.
		if _, err := c.Stats(b.Context()); err != nil {
			b.Fatal(err)
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.ShimPid()))
		for _, l := range strings.Split(string(st), "\n") {
			f := strings.Fields(l)
			if len(f) < 2 {
				continue
			}
			n, _ := strconv.Atoi(f[1])
			switch f[0] {
			case "VmRSS:":
				kb = append(kb, n)
			case "RssAnon:":
				anon = append(anon, n)
			}
		}
		cleanup(b, ctr{Client: c, state: state})
	}
	sort.Ints(kb)
	sort.Ints(anon)
	b.ReportMetric(float64(kb[len(kb)/2]), "KiB-shim-rss")
	b.ReportMetric(float64(anon[len(anon)/2]), "KiB-shim-anon")
}

// spares lists this process's berth-shim children on standby: started
// with --standby and not yet given a job (which sends their output to the
// state directory's log instead of /dev/null).
func spares(t *testing.T) []int {
	t.Helper()
	var pids []int
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		pid, _ := strconv.Atoi(filepath.Base(p))
		cmd, _ := os.ReadFile(p + "/cmdline")
		stat, _ := os.ReadFile(p + "/stat")
		if len(stat) == 0 || !alive(pid) {
			continue
		}
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		out, _ := os.Readlink(p + "/fd/1")
		if len(f) > 1 && f[1] == strconv.Itoa(os.Getpid()) && strings.Contains(string(cmd), "--standby") && out == os.DevNull {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestLauncherUsesSpareShim: after a first (cold) start the Launcher keeps
// one shim on standby; the next container is created by that process, runs
// and logs as a cold one does; a spare killed on standby is replaced by a
// cold start; Close ends the spare and leaves the containers' shims alone.
func TestLauncherUsesSpareShim(t *testing.T) {
	needRoot(t)
	l := shim.NewLauncher(shimBinary)
	defer l.Close()
	if got := spares(t); len(got) != 0 {
		t.Fatalf("spares before any start: %v", got)
	}
	first := startWith(t, l, "cold", []string{"sleep", "1000"}, shim.StartOptions{})
	var spare []int
	waitFor(t, 5*time.Second, func() bool { spare = spares(t); return len(spare) == 1 })
	if spare[0] == first.ShimPid() {
		t.Fatalf("the first container's shim %d is on standby", spare[0])
	}

	c := startWith(t, l, "warm", []string{"sh", "-c", "echo from-spare; exit 7"}, shim.StartOptions{CreateOnly: true})
	if c.ShimPid() != spare[0] {
		t.Fatalf("container's shim is %d, want the spare %d", c.ShimPid(), spare[0])
	}
	if _, err := c.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, c); e.Code != 7 {
		t.Fatalf("exit = %+v, want code 7", e)
	}
	if got := readLog(t, c.log); !slices.Equal(got, []string{"stdout F from-spare"}) {
		t.Fatalf("log = %q", got)
	}
	if fi, err := os.Stat(filepath.Join(c.state, wire.LogName)); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("the spare's shim log in its state dir: %v", err)
	}

	// A spare that died on standby: the next start goes cold.
	waitFor(t, 5*time.Second, func() bool { spare = spares(t); return len(spare) == 1 })
	if err := syscall.Kill(spare[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return !alive(spare[0]) })
	c3 := startWith(t, l, "after-kill", []string{"sleep", "1000"}, shim.StartOptions{})
	if c3.ShimPid() == spare[0] {
		t.Fatal("started on the killed spare")
	}
	if st, err := c3.State(t.Context()); err != nil || st.Status != "running" {
		t.Fatalf("state after a dead spare = %+v, %v", st, err)
	}

	waitFor(t, 5*time.Second, func() bool { spare = spares(t); return len(spare) == 1 })
	l.Close()
	if alive(spare[0]) {
		t.Fatalf("spare %d survives Close", spare[0])
	}
	for _, x := range []ctr{first, c3} {
		if !alive(x.ShimPid()) {
			t.Fatalf("Close ended container shim %d", x.ShimPid())
		}
	}
}

// TestStdinOnce: with StdinOnce the end of the first attach that streams
// stdin (its client going away) closes the container's stdin, so cat sees
// EOF and the container exits; a second stdin attach is refused. Without
// it the container keeps its stdin across attaches.
func TestStdinOnce(t *testing.T) {
	needRoot(t)
	attachLine := func(c ctr, line string) error {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		pr, pw := io.Pipe()
		done := make(chan error, 1)
		go func() {
			_, err := c.Attach(ctx, shim.Streams{Stdin: pr, Stdout: io.Discard})
			done <- err
		}()
		if _, err := fmt.Fprintln(pw, line); err != nil {
			return err
		}
		time.Sleep(200 * time.Millisecond)
		// The client goes away without closing stdin itself.
		cancel()
		<-done
		return nil
	}
	once := start(t, "stdin-once", []string{"sh", "-c", "cat; echo after-eof"}, shim.StartOptions{Stdin: true, StdinOnce: true})
	if err := attachLine(once, "first"); err != nil {
		t.Fatal(err)
	}
	if e := wait(t, once); e.Code != 0 {
		t.Fatalf("exit = %+v", e)
	}
	if got := readLog(t, once.log); !slices.Equal(got, []string{"stdout F first", "stdout F after-eof"}) {
		t.Fatalf("log = %q", got)
	}
	_, err := once.Attach(t.Context(), shim.Streams{Stdin: strings.NewReader("again\n"), Stdout: io.Discard})
	if !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second stdin attach = %v, want failed precondition", err)
	}

	kept := start(t, "stdin-kept", []string{"sh", "-c", "cat; echo after-eof"}, shim.StartOptions{Stdin: true})
	for _, l := range []string{"one", "two"} {
		if err := attachLine(kept, l); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := kept.State(t.Context()); err != nil || st.Status != wire.StatusRunning {
		t.Fatalf("without stdin_once after two attaches: %+v, %v", st, err)
	}
	waitFor(t, 5*time.Second, func() bool { return len(readLog(t, kept.log)) == 2 })
	if got := readLog(t, kept.log); !slices.Equal(got, []string{"stdout F one", "stdout F two"}) {
		t.Fatalf("log = %q", got)
	}
}
