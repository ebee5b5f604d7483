package runtime_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testutil"
	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

const helperEnv = "BERTH_RUNTIME_TEST_HELPER"

var (
	shimBinary string
	testRoot   string
	// stateRoot is short: shim sockets live below it.
	stateRoot string
	lowerDir  string
	podSeq    atomic.Int32
)

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
	case createSandboxHelperMode:
		os.Exit(createSandboxHelper())
	default:
		os.Exit(crashHelper())
	}
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	var err error
	if testRoot, err = os.MkdirTemp("", "berth-runtime-test-"); err != nil {
		panic(err)
	}
	// Containers in a user namespace reach their rootfs as the mapped
	// user: the path must be traversable by others.
	if err := os.Chmod(testRoot, 0o711); err != nil {
		panic(err)
	}
	if stateRoot, err = os.MkdirTemp("/tmp", "brt"); err != nil {
		panic(err)
	}
	code := func() int {
		var err error
		if shimBinary, err = shimbuild.Build(testRoot); err != nil {
			fmt.Printf("build shim: %v\n", err)
			return 1
		}
		lowerDir = filepath.Join(testRoot, "lower")
		if err := makeBusyboxRootfs(lowerDir); err != nil {
			fmt.Println(err)
			return 1
		}
		code := m.Run()
		if err := leftovers(); err != nil {
			fmt.Println("leftovers after the tests:", err)
			code = 1
		}
		return code
	}()
	os.RemoveAll(testRoot)
	os.RemoveAll(stateRoot)
	os.Exit(code)
}

func needRoot(t testing.TB) {
	testutil.RequireRoot(t, "creates namespaces, mounts, cgroups and containers")
}

// makeBusyboxRootfs lays out the host's static busybox with its applets.
func makeBusyboxRootfs(dir string) error {
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		return err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("needs the host's busybox-static: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return fmt.Errorf("list busybox applets: %w", err)
	}
	for _, a := range strings.Fields(string(out)) {
		if a == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "etc/group"), []byte("root:x:0:\nnobody:x:65534:\n"), 0o644)
}

// leftovers reports mounts, cgroups and processes the tests left.
func leftovers() error {
	var errs []error
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, testRoot) || strings.Contains(l, stateRoot) {
			errs = append(errs, fmt.Errorf("mount: %s", l))
		}
	}
	// This process's pods only: other runs of these tests may be going on.
	own := fmt.Sprintf("berth-rt-%d-*", os.Getpid())
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/" + own)
	cg2, _ := filepath.Glob("/sys/fs/cgroup/" + own)
	for _, d := range append(cg, cg2...) {
		errs = append(errs, fmt.Errorf("cgroup %s", d))
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/exe")
	for _, p := range procs {
		if exe, err := os.Readlink(p); err == nil && exe == shimBinary {
			errs = append(errs, fmt.Errorf("process %s still runs %s", filepath.Dir(p), exe))
		}
	}
	return errors.Join(errs...)
}

func testConfig() berthruntime.Config {
	return berthruntime.Config{
		Root:       filepath.Join(testRoot, "root"),
		StateDir:   stateRoot,
		ShimBinary: shimBinary,
	}
}

func openManager(t *testing.T) *berthruntime.Manager {
	t.Helper()
	m, err := berthruntime.Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// cgroupParent is a fresh top-level cgroup per pod, so that pods never
// share a parent that only one of them recorded as its own.
func cgroupParent() string {
	return fmt.Sprintf("/berth-rt-%d-%d", os.Getpid(), podSeq.Add(1))
}

func newPod(t *testing.T, m *berthruntime.Manager, c berthruntime.SandboxConfig) *berthruntime.Sandbox {
	t.Helper()
	if c.Name == "" {
		// Longer than a hostname may be: the default hostname is not it.
		c.Name = fmt.Sprintf("pod-%d-%s", podSeq.Add(1), strings.Repeat("x", 70))
	}
	c.Namespace = "test"
	if c.CgroupParent == "" {
		c.CgroupParent = cgroupParent()
	}
	sb, err := m.CreateSandbox(t.Context(), c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.RemoveSandbox(ctx, sb.ID); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	return sb
}

// overlay gives a container a fresh writable layer over the busybox rootfs.
func overlay(t *testing.T) []berthruntime.Mount {
	t.Helper()
	d := t.TempDir()
	for _, s := range []string{"upper", "work"} {
		if err := os.Mkdir(filepath.Join(d, s), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return []berthruntime.Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + lowerDir, "upperdir=" + filepath.Join(d, "upper"), "workdir=" + filepath.Join(d, "work"),
	}}}
}

type ctrOpts struct {
	name   string
	args   []string
	mem    int64
	stop   syscall.Signal
	log    string
	logCfg berthruntime.LogConfig
	pidMod berthruntime.NamespaceMode
}

func newContainer(t *testing.T, m *berthruntime.Manager, sb *berthruntime.Sandbox, o ctrOpts) *berthruntime.Container {
	t.Helper()
	sbID := ""
	if sb != nil {
		sbID = sb.ID
	}
	if o.name == "" {
		o.name = fmt.Sprintf("c%d", podSeq.Add(1))
	}
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID:  sbID,
		Name:       o.name,
		Rootfs:     overlay(t),
		LogPath:    o.log,
		Log:        o.logCfg,
		StopSignal: o.stop,
		PID:        o.pidMod,
		Spec: spec.Container{
			Args:      o.args,
			Resources: spec.Resources{MemoryLimit: o.mem},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.RemoveContainer(ctx, c.ID); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	return c
}

func start(t *testing.T, m *berthruntime.Manager, id string) {
	t.Helper()
	if err := m.StartContainer(t.Context(), id); err != nil {
		t.Fatal(err)
	}
}

// waitExit waits for the container's Stopped event and returns its record.
func waitExit(t *testing.T, m *berthruntime.Manager, events <-chan berthruntime.Event, id string) *berthruntime.Container {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		c, err := m.Container(id)
		if err != nil {
			t.Fatal(err)
		}
		if c.State == berthruntime.ContainerExited {
			return c
		}
		select {
		case <-events:
		case <-timeout:
			t.Fatalf("container %s did not exit", id)
		}
	}
}

func execOut(t *testing.T, m *berthruntime.Manager, id string, cmd ...string) string {
	t.Helper()
	out, errb, code, err := m.ExecSync(t.Context(), id, cmd, 10*time.Second)
	if err != nil {
		t.Fatalf("exec %v: %v", cmd, err)
	}
	if code != 0 {
		t.Fatalf("exec %v: exit %d, stderr %q", cmd, code, errb)
	}
	return strings.TrimSpace(string(out))
}

func isMounted(path string) bool {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i > 0 && !strings.HasPrefix(strings.TrimSpace(string(b[i+1:])), "Z")
}

func TestSandboxLifecycleLeavesNothing(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	parent := cgroupParent()
	sb, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{
		Name: "lifecycle", Namespace: "test", Hostname: "lifepod", CgroupParent: parent,
		DNS:     &berthruntime.DNS{Servers: []string{"10.0.0.10"}, Searches: []string{"svc.local"}, Options: []string{"ndots:5"}},
		Hosts:   []berthruntime.HostEntry{{IP: "10.1.2.3", Names: []string{"db", "db.local"}}},
		Sysctls: map[string]string{"net.ipv4.ip_unprivileged_port_start": "53", "kernel.shmmni": "1000"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sb.ID) != 64 || sb.State != berthruntime.SandboxReady || sb.PausePid == 0 {
		t.Fatalf("sandbox = %+v", sb)
	}
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath, sb.ShmPath} {
		if !isMounted(p) {
			t.Errorf("%s is not a mount", p)
		}
	}
	resolv, _ := os.ReadFile(sb.ResolvConfPath)
	if string(resolv) != "search svc.local\nnameserver 10.0.0.10\noptions ndots:5\n" {
		t.Errorf("resolv.conf = %q", resolv)
	}
	hosts, _ := os.ReadFile(sb.HostsPath)
	if !strings.Contains(string(hosts), "10.1.2.3\tdb db.local\n") || !strings.Contains(string(hosts), "127.0.0.1\tlocalhost") {
		t.Errorf("hosts = %q", hosts)
	}
	if h, _ := os.ReadFile(sb.HostnamePath); string(h) != "lifepod\n" {
		t.Errorf("hostname file = %q", h)
	}
	if !alive(sb.PausePid) {
		t.Fatalf("pause holder %d not running", sb.PausePid)
	}
	// The holder is in the pod's namespaces and cgroup.
	for _, ns := range []string{"net", "ipc", "uts"} {
		want, _ := os.Stat(map[string]string{"net": sb.NetNSPath, "ipc": sb.IPCNSPath, "uts": sb.UTSNSPath}[ns])
		got, err := os.Stat(fmt.Sprintf("/proc/%d/ns/%s", sb.PausePid, ns))
		if err != nil || !os.SameFile(want, got) {
			t.Errorf("pause holder's %s namespace is not the pod's", ns)
		}
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", sb.PausePid))
	if !strings.Contains(string(cg), parent+"/berth-pause") {
		t.Errorf("pause holder cgroups:\n%s", cg)
	}
	// Hostname and sysctls inside the pod's namespaces, seen from a
	// container that joins them.
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)
	if got := execOut(t, m, c.ID, "hostname"); got != "lifepod" {
		t.Errorf("hostname = %q", got)
	}
	if got := execOut(t, m, c.ID, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/kernel/shmmni"); got != "53\n1000" {
		t.Errorf("sysctls = %q", got)
	}
	if got := execOut(t, m, c.ID, "cat", "/etc/resolv.conf"); !strings.Contains(got, "nameserver 10.0.0.10") {
		t.Errorf("container resolv.conf = %q", got)
	}
	if got := execOut(t, m, c.ID, "sh", "-c", "ip link show lo | grep -c UP"); got != "1" {
		t.Errorf("loopback not up: %q", got)
	}

	if err := m.StopSandbox(t.Context(), sb.ID, time.Second); err != nil {
		t.Fatal(err)
	}
	if alive(sb.PausePid) {
		t.Error("pause holder survives StopSandbox")
	}
	got, err := m.Sandbox(sb.ID[:12])
	if err != nil || got.State != berthruntime.SandboxNotReady {
		t.Fatalf("after stop: %+v, %v", got, err)
	}
	if cs, _ := m.Container(c.ID); cs.State != berthruntime.ContainerExited {
		t.Errorf("container after StopSandbox: %v", cs.State)
	}
	if _, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "late", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"true"}}}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("create in a stopped pod: %v", err)
	}
	if err := m.StopSandbox(t.Context(), sb.ID, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := m.RemoveSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveSandbox(t.Context(), sb.ID); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := m.Sandbox(sb.ID); !errdefs.IsNotFound(err) {
		t.Errorf("removed sandbox: %v", err)
	}
	if _, err := m.Container(c.ID); !errdefs.IsNotFound(err) {
		t.Errorf("container of removed sandbox: %v", err)
	}
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath, sb.ShmPath, filepath.Dir(sb.HostsPath), c.Bundle} {
		if isMounted(p) {
			t.Errorf("%s still mounted", p)
		}
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s still exists", p)
		}
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent); len(dirs) > 0 {
		t.Errorf("pod cgroups left: %v", dirs)
	}
}

func TestContainerExitCodesLogsAndEvents(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	// waitExit drains events; this one is read only at the end.
	all := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	logPath := filepath.Join(t.TempDir(), "logs", "c.log")
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "echo hello; echo oops >&2; exit 3"}, log: logPath})
	if c.State != berthruntime.ContainerCreated || c.Pid == 0 {
		t.Fatalf("created: %+v", c)
	}
	start(t, m, c.ID)
	got := waitExit(t, m, events, c.ID)
	if got.ExitCode != 3 || got.Reason != berthruntime.ReasonError || got.StartedAt.IsZero() || got.FinishedAt.Before(got.StartedAt) {
		t.Errorf("exit: code %d reason %q started %v finished %v", got.ExitCode, got.Reason, got.StartedAt, got.FinishedAt)
	}
	log, _ := os.ReadFile(logPath)
	if !strings.Contains(string(log), " stdout F hello\n") || !strings.Contains(string(log), " stderr F oops\n") {
		t.Errorf("log = %q", log)
	}
	if err := m.StartContainer(t.Context(), c.ID); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("second start: %v", err)
	}
	if err := m.StopContainer(t.Context(), c.ID, time.Second); err != nil {
		t.Errorf("stop of exited container: %v", err)
	}

	ok := newContainer(t, m, sb, ctrOpts{args: []string{"true"}})
	start(t, m, ok.ID)
	if got := waitExit(t, m, events, ok.ID); got.ExitCode != 0 || got.Reason != berthruntime.ReasonCompleted {
		t.Errorf("true: code %d reason %q", got.ExitCode, got.Reason)
	}
	if err := m.RemoveContainer(t.Context(), ok.ID); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveContainer(t.Context(), ok.ID); err != nil {
		t.Errorf("second remove: %v", err)
	}
	if _, err := os.Stat(ok.Bundle); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bundle left: %v", err)
	}

	// Events in order for the removed container.
	var seen []berthruntime.EventType
	deadline := time.After(5 * time.Second)
	for len(seen) < 4 {
		select {
		case e := <-all:
			if e.ContainerID == ok.ID {
				if e.SandboxID != sb.ID {
					t.Errorf("event sandbox %s", e.SandboxID)
				}
				seen = append(seen, e.Type)
			}
		case <-deadline:
			t.Fatalf("events of %s: %v", ok.ID, seen)
		}
	}
	want := []berthruntime.EventType{berthruntime.EventCreated, berthruntime.EventStarted, berthruntime.EventStopped, berthruntime.EventDeleted}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("events = %v, want %v", seen, want)
	}
}

// TestContainerLogConfig: the log format and rotation reach the shim; a
// bad one is refused before anything is made.
func TestContainerLogConfig(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	logPath := filepath.Join(t.TempDir(), "c-json.log")
	c := newContainer(t, m, sb, ctrOpts{
		args:   []string{"sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; i=$((i+1)); done"},
		log:    logPath,
		logCfg: berthruntime.LogConfig{Format: berthruntime.LogFormatJSON, MaxSize: 4096, MaxFiles: 2},
	})
	start(t, m, c.ID)
	waitExit(t, m, events, c.ID)
	cur, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(logPath + ".1")
	if err != nil {
		t.Fatalf("no rotated file: %v", err)
	}
	if !strings.HasSuffix(string(cur), "\n") || !strings.Contains(string(cur), `{"log":"line 299\n","stream":"stdout","time":"`) || len(old) < 4096 || len(old) > 4096+100 {
		t.Fatalf("json-file log: rotated %d bytes, current ends %q", len(old), cur[max(0, len(cur)-120):])
	}
	_, err = m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "bad", Rootfs: overlay(t), LogPath: logPath,
		Log: berthruntime.LogConfig{Format: "syslog"}, Spec: spec.Container{Args: []string{"true"}}})
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("unknown log format: %v, want invalid argument", err)
	}
}

func TestStopGraceThenKill(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	// sleep is not PID 1 of the pod's PID namespace: SIGTERM kills it.
	polite := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	// This one ignores SIGTERM and must be killed after the grace period.
	stubborn := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"}})
	// Stop signal from the config.
	custom := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "trap 'exit 42' USR1; while true; do sleep 0.1; done"}, stop: syscall.SIGUSR1})
	for _, c := range []string{polite.ID, stubborn.ID, custom.ID} {
		start(t, m, c)
	}
	time.Sleep(300 * time.Millisecond) // let the shells install their traps

	t0 := time.Now()
	if err := m.StopContainer(t.Context(), polite.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("SIGTERM stop took %v", d)
	}
	if c, _ := m.Container(polite.ID); c.State != berthruntime.ContainerExited || c.ExitCode != 143 {
		t.Errorf("polite: %v code %d", c.State, c.ExitCode)
	}

	t0 = time.Now()
	if err := m.StopContainer(t.Context(), stubborn.ID, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < 1500*time.Millisecond || d > 10*time.Second {
		t.Errorf("grace stop took %v", d)
	}
	if c, _ := m.Container(stubborn.ID); c.State != berthruntime.ContainerExited || c.ExitCode != 137 || c.Reason != berthruntime.ReasonError {
		t.Errorf("stubborn: %v code %d %s", c.State, c.ExitCode, c.Reason)
	}

	if err := m.StopContainer(t.Context(), custom.ID, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if c, _ := m.Container(custom.ID); c.ExitCode != 42 {
		t.Errorf("custom stop signal: code %d", c.ExitCode)
	}
	if err := m.StopContainer(t.Context(), custom.ID, time.Second); err != nil {
		t.Errorf("second stop: %v", err)
	}
	if err := m.StopContainer(t.Context(), strings.Repeat("0", 64), time.Second); !errdefs.IsNotFound(err) {
		t.Errorf("stop unknown: %v", err)
	}
}

func TestOOMKilled(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	// dd allocates its 64 MiB block and fills it: far over 16 MiB.
	c := newContainer(t, m, sb, ctrOpts{args: []string{"dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=4"}, mem: 16 << 20})
	start(t, m, c.ID)
	got := waitExit(t, m, events, c.ID)
	if got.Reason != berthruntime.ReasonOOMKilled || got.ExitCode != 137 {
		t.Errorf("exit code %d reason %q, want 137 OOMKilled", got.ExitCode, got.Reason)
	}
}

func TestExec(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	if _, _, _, err := m.ExecSync(t.Context(), c.ID, []string{"true"}, 0); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("exec in a created container: %v", err)
	}
	start(t, m, c.ID)

	out, errb, code, err := m.ExecSync(t.Context(), c.ID, []string{"sh", "-c", "echo -n out; echo -n err >&2; exit 5"}, 0)
	if err != nil || string(out) != "out" || string(errb) != "err" || code != 5 {
		t.Errorf("exec sync: %q %q %d %v", out, errb, code, err)
	}

	t0 := time.Now()
	_, _, _, err = m.ExecSync(t.Context(), c.ID, []string{"sleep", "30"}, 500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("exec with timeout: %v", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("timed-out exec took %v", d)
	}
	if got := execOut(t, m, c.ID, "sh", "-c", "pidof sleep | wc -w"); got != "1" {
		t.Errorf("the timed-out exec still runs: %s sleep processes", got)
	}

	out, _, code, err = m.ExecSync(t.Context(), c.ID, []string{"head", "-c", "20000000", "/dev/zero"}, 30*time.Second)
	if err != nil || code != 0 || len(out) != berthruntime.MaxExecSyncOutput {
		t.Errorf("capped exec: %d bytes, code %d, %v", len(out), code, err)
	}

	var stdout, stderr bytes.Buffer
	n, err := m.Exec(t.Context(), c.ID, berthruntime.ExecOptions{
		Cmd:     []string{"sh", "-c", "cat; echo e >&2; exit 2"},
		Streams: berthruntime.Streams{Stdin: strings.NewReader("piped"), Stdout: &stdout, Stderr: &stderr},
	})
	if err != nil || n != 2 || stdout.String() != "piped" || stderr.String() != "e\n" {
		t.Errorf("exec: %d %v %q %q", n, err, stdout.String(), stderr.String())
	}
}

func TestPodSharesNamespaces(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{Hostname: "sharing"})
	server := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "echo shared > /dev/shm/f; mkdir /www; echo pong > /www/index.html; exec httpd -f -p 127.0.0.1:8080 -h /www"}})
	client := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	own := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}, pidMod: berthruntime.NamespaceContainer})
	for _, c := range []string{server.ID, client.ID, own.ID} {
		start(t, m, c)
	}
	waitFor(t, func() bool {
		out, _, code, _ := m.ExecSync(t.Context(), client.ID, []string{"wget", "-qO-", "http://127.0.0.1:8080/index.html"}, 5*time.Second)
		return code == 0 && string(out) == "pong\n"
	})
	if got := execOut(t, m, client.ID, "cat", "/dev/shm/f"); got != "shared" {
		t.Errorf("/dev/shm not shared: %q", got)
	}
	for _, ns := range []string{"net", "ipc", "uts"} {
		a := execOut(t, m, server.ID, "readlink", "/proc/self/ns/"+ns)
		b := execOut(t, m, client.ID, "readlink", "/proc/self/ns/"+ns)
		host := hostNS(ns)
		if a != b || a == host {
			t.Errorf("%s namespace: server %s client %s host %s", ns, a, b, host)
		}
	}
	if got := execOut(t, m, client.ID, "hostname"); got != "sharing" {
		t.Errorf("hostname = %q", got)
	}
	// One PID namespace: the client sees the server's httpd, PID 1 is the
	// pause holder.
	if got := execOut(t, m, client.ID, "pidof", "httpd"); got == "" {
		t.Error("client does not see the server's processes")
	}
	if got := execOut(t, m, own.ID, "sh", "-c", "pidof httpd || echo none"); got != "none" {
		t.Errorf("a container with its own PID namespace sees httpd: %q", got)
	}

	// Port forward into the pod's network namespace.
	a, b := net.Pipe()
	errc := make(chan error, 1)
	go func() { errc <- m.PortForward(t.Context(), sb.ID, 8080, b) }()
	fmt.Fprint(a, "GET /index.html HTTP/1.0\r\n\r\n")
	resp, _ := io.ReadAll(a)
	if !strings.HasPrefix(string(resp), "HTTP/1.") || !strings.HasSuffix(string(resp), "pong\n") {
		t.Errorf("port forward response %q", resp)
	}
	a.Close()
	if err := <-errc; err != nil {
		t.Errorf("port forward: %v", err)
	}

	// Stats.
	cs, err := m.ContainerStats(t.Context(), server.ID)
	if err != nil {
		t.Fatal(err)
	}
	if cs.CPUUsage == 0 || cs.MemoryUsage == 0 || cs.MemoryWorkingSet == 0 || cs.Pids == 0 || cs.WritableLayerBytes == 0 || cs.WritableLayerInodes < 3 {
		t.Errorf("container stats: %+v", cs)
	}
	ss, err := m.SandboxStats(t.Context(), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(ss.Containers) != 3 || ss.CPUUsage < cs.CPUUsage || ss.Pids < 3 {
		t.Errorf("sandbox stats: %+v", ss)
	}
	if len(ss.Network) != 0 {
		t.Errorf("a pod without CNI has interfaces: %+v", ss.Network)
	}
}

func TestHostNamespaces(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{Namespaces: berthruntime.SandboxNamespaces{
		Network: berthruntime.NamespaceNode, IPC: berthruntime.NamespaceNode, PID: berthruntime.NamespaceNode,
	}})
	if sb.NetNSPath != "" || sb.IPCNSPath != "" || sb.PausePid != 0 || sb.ShmPath != "" {
		t.Fatalf("host pod: %+v", sb)
	}
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)
	for _, ns := range []string{"net", "ipc", "uts", "pid"} {
		host := hostNS(ns)
		if got := execOut(t, m, c.ID, "readlink", "/proc/self/ns/"+ns); got != host {
			t.Errorf("%s namespace %s, host's %s", ns, got, host)
		}
	}
	hn, _ := os.Hostname()
	if got := execOut(t, m, c.ID, "hostname"); got != hn {
		t.Errorf("hostname %q, host's %q", got, hn)
	}
	if _, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "bad", Namespaces: berthruntime.SandboxNamespaces{Network: berthruntime.NamespaceNode}, Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("net sysctl with host network: %v", err)
	}
	if _, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: sb.Config.Name, Namespace: "test"}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate sandbox name: %v", err)
	}
}

// hostNS names this thread's namespace: /proc/self is the main thread's,
// and any thread could have been lent to a namespace change.
func hostNS(kind string) string {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	s, _ := os.Readlink("/proc/thread-self/ns/" + kind)
	return s
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("condition not met in 10s")
}

// crashHelper runs a Manager in a child process that the test kills with
// SIGKILL: a real crash of berthd. It creates a pod with a long-running
// container and one that exits with 7 after a while, prints the IDs, and
// waits to be killed.
func crashHelper() int {
	cfg := berthruntime.Config{
		Root: os.Getenv("BERTH_RT_ROOT"), StateDir: os.Getenv("BERTH_RT_STATE"), ShimBinary: os.Getenv("BERTH_RT_SHIM"),
	}
	ctx := context.Background()
	m, err := berthruntime.Open(ctx, cfg)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	sb, err := m.CreateSandbox(ctx, berthruntime.SandboxConfig{Name: "crash", Namespace: "test", CgroupParent: os.Getenv("BERTH_RT_CGROUP")})
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	var ids []string
	for i, args := range [][]string{{"sleep", "1000"}, {"sh", "-c", "sleep 2; exit 7"}} {
		var mounts []berthruntime.Mount
		for _, s := range []string{"upper", "work"} {
			d := filepath.Join(os.Getenv("BERTH_RT_LAYERS"), fmt.Sprint(i), s)
			os.MkdirAll(d, 0o755)
		}
		d := filepath.Join(os.Getenv("BERTH_RT_LAYERS"), fmt.Sprint(i))
		mounts = []berthruntime.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + os.Getenv("BERTH_RT_LOWER"), "upperdir=" + d + "/upper", "workdir=" + d + "/work"}}}
		c, err := m.CreateContainer(ctx, berthruntime.ContainerConfig{SandboxID: sb.ID, Name: fmt.Sprint("c", i), Rootfs: mounts, Spec: spec.Container{Args: args}})
		if err == nil {
			err = m.StartContainer(ctx, c.ID)
		}
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		ids = append(ids, c.ID)
	}
	fmt.Println("ids", sb.ID, ids[0], ids[1])
	select {}
}

func TestOpenAfterCrash(t *testing.T) {
	needRoot(t)
	cfg := testConfig()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1",
		"BERTH_RT_ROOT="+cfg.Root, "BERTH_RT_STATE="+cfg.StateDir, "BERTH_RT_SHIM="+cfg.ShimBinary,
		"BERTH_RT_CGROUP="+cgroupParent(), "BERTH_RT_LOWER="+lowerDir, "BERTH_RT_LAYERS="+t.TempDir())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ids ") {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q: %v", line, err)
	}
	f := strings.Fields(line)
	sbID, running, exiting := f[1], f[2], f[3]
	// berthd dies; nothing else is touched.
	cmd.Process.Kill()
	cmd.Wait()
	time.Sleep(3 * time.Second) // the second container exits meanwhile

	m := openManager(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.RemoveSandbox(ctx, sbID); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	sb, err := m.Sandbox(sbID)
	if err != nil || sb.State != berthruntime.SandboxReady || !alive(sb.PausePid) {
		t.Fatalf("sandbox after restart: %+v %v", sb, err)
	}
	c, err := m.Container(exiting)
	if err != nil || c.State != berthruntime.ContainerExited || c.ExitCode != 7 || c.Reason != berthruntime.ReasonError {
		t.Errorf("exited meanwhile: %+v %v", c, err)
	}
	c, err = m.Container(running)
	if err != nil || c.State != berthruntime.ContainerRunning || !alive(c.Pid) {
		t.Fatalf("running: %+v %v", c, err)
	}
	// The reconnected container still serves exec and stops with its exit
	// recorded by the new Manager's watcher.
	if got := execOut(t, m, running, "echo", "alive"); got != "alive" {
		t.Errorf("exec after restart: %q", got)
	}
	if err := m.StopContainer(t.Context(), running, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if c, _ := m.Container(running); c.State != berthruntime.ContainerExited || c.ExitCode != 143 {
		t.Errorf("stopped after restart: %v code %d", c.State, c.ExitCode)
	}
	// A third Manager sees the same.
	m.Close()
	m3 := openManager(t)
	if c, _ := m3.Container(running); c == nil || c.ExitCode != 143 {
		t.Errorf("reopened: %+v", c)
	}
	m3.Close()
}

func TestShimLost(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	events := m.Subscribe(t.Context())
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)
	c, _ = m.Container(c.ID)
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// The shim is the container init's parent.
	var ppid int
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	fmt.Sscan(f[1], &ppid)
	if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", ppid)); exe != shimBinary {
		t.Fatalf("parent %d of the container runs %s", ppid, exe)
	}
	if err := syscall.Kill(ppid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	got := waitExit(t, m, events, c.ID)
	if got.ExitCode != 255 || got.Reason != berthruntime.ReasonUnknown {
		t.Errorf("after the shim died: code %d reason %q", got.ExitCode, got.Reason)
	}
	if !alive(c.Pid) {
		t.Fatal("the container died with its shim; the test assumes it survives")
	}
	if err := m.RemoveContainer(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	if alive(c.Pid) {
		t.Errorf("container process %d survives its removal", c.Pid)
	}
}

// BenchmarkPodStart measures what critest's benchmark times for Berth's
// part: RunPodSandbox (without CNI), CreateContainer, StartContainer, then
// the stop and removal; without a log file, with the kubelet's CRI log,
// and with a rotated json-file log as a docker container has (the log's
// cost on the start path).
//
// BERTH_TEST_DEBUG=1 logs the step timings of CreateSandbox,
// CreateContainer and StartContainer (go test -bench BenchmarkPodStart -v).
func BenchmarkPodStart(b *testing.B) {
	for _, bc := range []struct {
		name string
		log  *berthruntime.LogConfig
	}{
		{"nolog", nil},
		{"cri", &berthruntime.LogConfig{}},
		{"json-file", &berthruntime.LogConfig{Format: berthruntime.LogFormatJSON, MaxSize: 10 << 20, MaxFiles: 5, Compress: true}},
	} {
		b.Run(bc.name, func(b *testing.B) { benchPodStart(b, bc.log) })
	}
}

func benchPodStart(b *testing.B, log *berthruntime.LogConfig) {
	needRoot(b)
	ctx := b.Context()
	if os.Getenv("BERTH_TEST_DEBUG") != "" {
		ctx = logctx.With(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	m, err := berthruntime.Open(ctx, testConfig())
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	var create, ctr, startT, stop, remove time.Duration
	for i := 0; b.Loop(); i++ {
		d := b.TempDir()
		os.Mkdir(filepath.Join(d, "upper"), 0o755)
		os.Mkdir(filepath.Join(d, "work"), 0o755)
		mounts := []berthruntime.Mount{{Type: "overlay", Source: "overlay", Options: []string{"lowerdir=" + lowerDir, "upperdir=" + d + "/upper", "workdir=" + d + "/work"}}}
		t0 := time.Now()
		sb, err := m.CreateSandbox(ctx, berthruntime.SandboxConfig{Name: fmt.Sprint("bench-", i), Namespace: "bench", CgroupParent: cgroupParent()})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		cfg := berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "c", Rootfs: mounts, Spec: spec.Container{Args: []string{"sleep", "1000"}}}
		if log != nil {
			cfg.LogPath, cfg.Log = filepath.Join(d, "c.log"), *log
		}
		c, err := m.CreateContainer(ctx, cfg)
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := m.StartContainer(ctx, c.ID); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		if err := m.StopSandbox(ctx, sb.ID, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		if err := m.RemoveSandbox(ctx, sb.ID); err != nil {
			b.Fatal(err)
		}
		t5 := time.Now()
		create += t1.Sub(t0)
		ctr += t2.Sub(t1)
		startT += t3.Sub(t2)
		stop += t4.Sub(t3)
		remove += t5.Sub(t4)
	}
	n := float64(b.N)
	b.ReportMetric(float64(create.Microseconds())/n/1000, "ms/sandbox")
	b.ReportMetric(float64(ctr.Microseconds())/n/1000, "ms/create")
	b.ReportMetric(float64(startT.Microseconds())/n/1000, "ms/start")
	b.ReportMetric(float64(stop.Microseconds())/n/1000, "ms/stoppod")
	b.ReportMetric(float64(remove.Microseconds())/n/1000, "ms/removepod")
}

// TestOpenUndoesPendingCreations: records still marked pending (berthd died
// inside CreateSandbox/CreateContainer) are undone by the next Open.
func TestOpenUndoesPendingCreations(t *testing.T) {
	needRoot(t)
	m, err := berthruntime.Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	parent := cgroupParent()
	sb, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "pending", Namespace: "test", CgroupParent: parent})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "c", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"sleep", "1000"}}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, m, c.ID)
	m.Close()
	for _, f := range []string{
		filepath.Join(testConfig().Root, "sandboxes", sb.ID, "sandbox.json"),
		filepath.Join(c.Bundle, "container.json"),
	} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b = bytes.Replace(b, []byte("{"), []byte("{\n\t\"Pending\": true,"), 1)
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// The network of the half-created pod is released first, while its
	// namespace is still pinned (the bridge plugin's DEL needs it).
	var released []string
	cfg := testConfig()
	cfg.ReleaseNetwork = func(_ context.Context, id, netns string) error {
		released = append(released, id)
		if netns != sb.NetNSPath || !isMounted(netns) {
			t.Errorf("ReleaseNetwork(%s, %s): want the pinned %s", id, netns, sb.NetNSPath)
		}
		return nil
	}
	m2, err := berthruntime.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if len(released) != 1 || released[0] != sb.ID {
		t.Errorf("ReleaseNetwork called for %v, want the pending sandbox %s", released, sb.ID)
	}
	if _, err := m2.Sandbox(sb.ID); !errdefs.IsNotFound(err) {
		t.Errorf("pending sandbox after Open: %v", err)
	}
	if _, err := m2.Container(c.ID); !errdefs.IsNotFound(err) {
		t.Errorf("pending container after Open: %v", err)
	}
	if alive(sb.PausePid) || alive(c.Pid) {
		t.Errorf("processes survive: pause %v container %v", alive(sb.PausePid), alive(c.Pid))
	}
	for _, p := range []string{sb.NetNSPath, sb.ShmPath, filepath.Join(c.Bundle, "rootfs")} {
		if isMounted(p) {
			t.Errorf("%s still mounted", p)
		}
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent); len(dirs) > 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
}

// TestOpenDropsUnsyncedRecords: pending records are not synced, so after a
// power loss they may be empty or zeros. Open removes such records'
// directories instead of refusing to start; a record with other garbage
// is still data loss.
func TestOpenDropsUnsyncedRecords(t *testing.T) {
	needRoot(t)
	cfg := testConfig()
	cfg.Root = t.TempDir()
	ids := []string{strings.Repeat("a", 64), strings.Repeat("b", 64)}
	files := []string{
		filepath.Join(cfg.Root, "containers", ids[0], "container.json"),
		filepath.Join(cfg.Root, "sandboxes", ids[1], "sandbox.json"),
	}
	for i, f := range files {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		// Empty, as ext4 leaves an unsynced new file; zeros, as XFS may.
		if err := os.WriteFile(f, make([]byte, i*300), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	m, err := berthruntime.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open with unsynced records: %v", err)
	}
	m.Close()
	for _, f := range files {
		if _, err := os.Stat(filepath.Dir(f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v, want the directory removed", filepath.Dir(f), err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(files[0]), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(files[0], []byte("{\"ID\": tor"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := berthruntime.Open(t.Context(), cfg); !errdefs.IsDataLoss(err) {
		t.Fatalf("Open with a torn durable record = %v, want data loss", err)
	}
}

func TestUserNamespacePod(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	mapping := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	for _, pid := range []berthruntime.NamespaceMode{berthruntime.NamespacePod, berthruntime.NamespaceContainer} {
		t.Run(fmt.Sprint("pid-mode-", pid), func(t *testing.T) {
			sb := newPod(t, m, berthruntime.SandboxConfig{
				Hostname:   "userns",
				Namespaces: berthruntime.SandboxNamespaces{PID: pid},
				UserNS:     &berthruntime.UserNamespace{UIDMappings: mapping, GIDMappings: mapping},
				Sysctls:    map[string]string{"net.ipv4.ip_unprivileged_port_start": "80"},
			})
			if !isMounted(sb.UserNSPath) {
				t.Fatalf("user namespace not pinned at %q", sb.UserNSPath)
			}
			if !alive(sb.PausePid) {
				t.Errorf("no holder process: pause pid %d", sb.PausePid)
			}
			c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
			start(t, m, c.ID)
			if got := strings.Fields(execOut(t, m, c.ID, "cat", "/proc/self/uid_map")); strings.Join(got, " ") != "0 100000 65536" {
				t.Errorf("uid_map = %v", got)
			}
			if got := execOut(t, m, c.ID, "id", "-u"); got != "0" {
				t.Errorf("id -u = %q", got)
			}
			if got := execOut(t, m, c.ID, "hostname"); got != "userns" {
				t.Errorf("hostname = %q", got)
			}
			if got := execOut(t, m, c.ID, "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); got != "80" {
				t.Errorf("sysctl = %q", got)
			}
			// The rootfs is idmapped: image files and "/" belong to the
			// pod's root, and what it writes is its own on the host.
			if got := execOut(t, m, c.ID, "stat", "-c", "%u:%g", "/", "/bin/busybox", "/etc/passwd"); got != "0:0\n0:0\n0:0" {
				t.Errorf("owners inside = %q, want 0:0 each", got)
			}
			if got := execOut(t, m, c.ID, "sh", "-c", "echo x >/etc/new && chown 1000:1000 /etc/new && stat -c %u:%g /etc/new && touch /etc/passwd && echo ok"); got != "1000:1000\nok" {
				t.Errorf("write in the rootfs: %q", got)
			}
			for path, want := range map[string]uint32{"": 100000, "etc": 100000, "etc/new": 101000, "etc/passwd": 100000} {
				st, err := os.Lstat(filepath.Join(c.UpperDir, path))
				if err != nil {
					t.Errorf("upper dir: %v", err)
					continue
				}
				if got := st.Sys().(*syscall.Stat_t); got.Uid != want || got.Gid != want {
					t.Errorf("upper %q owned by %d:%d on the host, want %d", path, got.Uid, got.Gid, want)
				}
			}
			// The lower layer is untouched.
			if st, err := os.Stat(filepath.Join(lowerDir, "etc")); err != nil || st.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("lower etc: %v %v", st, err)
			}
			// The container's init runs as the mapped host user.
			st, err := os.Stat(fmt.Sprintf("/proc/%d", c.Pid))
			if err != nil || st.Sys().(*syscall.Stat_t).Uid != 100000 {
				t.Errorf("container init's host uid: %v %v", st.Sys(), err)
			}
		})
	}
	for name, u := range map[string]*berthruntime.UserNamespace{
		"two mappings": {UIDMappings: append(mapping, specs.LinuxIDMapping{ContainerID: 70000, HostID: 300000, Size: 10}), GIDMappings: mapping},
		"no root":      {UIDMappings: []specs.LinuxIDMapping{{ContainerID: 1, HostID: 1000, Size: 10}}, GIDMappings: mapping},
	} {
		if _, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "bad-" + name, UserNS: u}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestUserNamespaceIDMappedVolume: a volume with the pod's mappings (as CRI
// Mount.uid_mappings) shows host root's files as the pod's root's, and what
// the pod's root writes is host root's.
func TestUserNamespaceIDMappedVolume(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	mapping := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}
	sb := newPod(t, m, berthruntime.SandboxConfig{
		UserNS: &berthruntime.UserNamespace{UIDMappings: mapping, GIDMappings: mapping},
	})
	vol := t.TempDir()
	if err := os.WriteFile(filepath.Join(vol, "host"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "vol", Rootfs: overlay(t),
		Spec: spec.Container{
			Args:   []string{"sh", "-c", "stat -c %u:%g /vol/host && touch /vol/new"},
			Mounts: []spec.Mount{{Source: vol, Destination: "/vol", UIDMappings: mapping, GIDMappings: mapping}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.RemoveContainer(context.Background(), c.ID); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	events := m.Subscribe(t.Context())
	start(t, m, c.ID)
	if got := waitExit(t, m, events, c.ID); got.ExitCode != 0 {
		t.Fatalf("exit code %d", got.ExitCode)
	}
	st, err := os.Stat(filepath.Join(vol, "new"))
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != 0 || s.Gid != 0 {
		t.Errorf("file written through the idmapped volume is %d:%d on the host, want 0:0", s.Uid, s.Gid)
	}
}

func TestUserNamespacesSupported(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	// Linux 6.18 here: overlayfs takes idmapped lower layers.
	if err := m.UserNamespacesSupported(); err != nil {
		t.Fatal(err)
	}
	if ents, _ := filepath.Glob(filepath.Join(testConfig().Root, "idmap-probe-*")); len(ents) > 0 {
		t.Errorf("probe left %v", ents)
	}
}

func TestCreatedContainerStopAndRemove(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	if !alive(c.Pid) {
		t.Fatalf("created container's init %d not waiting", c.Pid)
	}
	if err := m.StopContainer(t.Context(), c.ID, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	got, _ := m.Container(c.ID)
	if got.State != berthruntime.ContainerExited || alive(c.Pid) {
		t.Errorf("stopped created container: %v, init alive %v", got.State, alive(c.Pid))
	}
	if err := m.StartContainer(t.Context(), c.ID); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("start after stop: %v", err)
	}
	if err := m.RemoveContainer(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}

	_, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "missing", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"/no/such/binary"}}})
	if err == nil {
		t.Fatal("a container with a missing binary was created")
	}
	t.Logf("missing binary: %v", err)
	if len(m.ListContainers()) != 0 {
		t.Errorf("containers after a failed create: %d", len(m.ListContainers()))
	}
	// The name is free again after the failure.
	c2 := newContainer(t, m, sb, ctrOpts{name: "missing", args: []string{"true"}})
	if c2.Config.Name != "missing" {
		t.Errorf("name %q", c2.Config.Name)
	}
	if _, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "missing", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"true"}}}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("duplicate name: %v", err)
	}
}

func TestUpdateReopenAttach(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	logPath := filepath.Join(t.TempDir(), "c.log")
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "cat", Rootfs: overlay(t), LogPath: logPath, Stdin: true,
		Spec: spec.Container{Args: []string{"cat"}, Resources: spec.Resources{MemoryLimit: 64 << 20}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.RemoveContainer(context.Background(), c.ID) })
	start(t, m, c.ID)

	// Resources: the cgroup's limit follows.
	if err := m.UpdateContainerResources(t.Context(), c.ID, spec.Resources{MemoryLimit: 100 << 20}); err != nil {
		t.Fatal(err)
	}
	cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", c.Pid))
	var memPath string
	for _, l := range strings.Split(string(cg), "\n") {
		if f := strings.SplitN(l, ":", 3); len(f) == 3 && (f[1] == "memory" || (f[1] == "" && f[0] == "0")) {
			memPath = f[2]
			if f[1] == "memory" {
				break
			}
		}
	}
	limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", memPath, "memory.limit_in_bytes"))
	if err != nil {
		limit, err = os.ReadFile(filepath.Join("/sys/fs/cgroup", memPath, "memory.max"))
	}
	if err != nil || strings.TrimSpace(string(limit)) != fmt.Sprint(100<<20) {
		t.Errorf("memory limit after update: %q %v", limit, err)
	}
	if got, _ := m.Container(c.ID); got.Config.Spec.Resources.MemoryLimit != 100<<20 {
		t.Errorf("recorded limit %d", got.Config.Spec.Resources.MemoryLimit)
	}

	// Attach: stdin reaches cat, its echo comes back and goes to the log.
	pr, pw := io.Pipe()
	var out testutil.Buffer
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Attach(ctx, c.ID, berthruntime.Streams{Stdin: pr, Stdout: &out}) }()
	fmt.Fprintln(pw, "first")
	waitFor(t, func() bool { return strings.Contains(out.String(), "first") })

	// Log rotation: rename, reopen, later lines go to the new file.
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	if err := m.ReopenContainerLog(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(pw, "second")
	waitFor(t, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "stdout F second")
	})
	old, _ := os.ReadFile(logPath + ".1")
	if !strings.Contains(string(old), "stdout F first") || strings.Contains(string(old), "second") {
		t.Errorf("rotated log = %q", old)
	}
	cancel()
	pw.Close()
	<-done
}

// TestOpenAfterReboot: after a reboot the shims and containers are gone,
// and so is everything under the state dir (tmpfs /run): pins, exit files;
// the records still say Ready/Running. Open reports the pod NotReady and
// the container exited with 255/Unknown, and removal still cleans up.
func TestOpenAfterReboot(t *testing.T) {
	needRoot(t)
	m, err := berthruntime.Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "reboot", Namespace: "test", CgroupParent: cgroupParent(), Namespaces: berthruntime.SandboxNamespaces{PID: berthruntime.NamespaceContainer}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "c", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"sleep", "1000"}}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, m, c.ID)
	c, _ = m.Container(c.ID)
	m.Close()
	// The "reboot": the shim dies first (no exit file), then the container.
	stat, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid))
	var ppid int
	fmt.Sscan(strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[1], &ppid)
	if err := syscall.Kill(ppid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !alive(ppid) })
	if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return !alive(c.Pid) })
	for _, p := range []string{sb.NetNSPath, sb.IPCNSPath, sb.UTSNSPath} {
		if err := syscall.Unmount(p, syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}

	m2 := openManager(t)
	got, err := m2.Sandbox(sb.ID)
	if err != nil || got.State != berthruntime.SandboxNotReady {
		t.Errorf("sandbox after reboot: %+v %v", got, err)
	}
	gc, err := m2.Container(c.ID)
	if err != nil || gc.State != berthruntime.ContainerExited || gc.ExitCode != 255 || gc.Reason != berthruntime.ReasonUnknown {
		t.Errorf("container after reboot: state %v code %d reason %q %v", gc.State, gc.ExitCode, gc.Reason, err)
	}
	if err := m2.RemoveSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
}

func TestExecTTY(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)
	resize := make(chan berthruntime.Size, 1)
	resize <- berthruntime.Size{Width: 100, Height: 40}
	var out testutil.Buffer
	code, err := m.Exec(t.Context(), c.ID, berthruntime.ExecOptions{
		Cmd: []string{"sh", "-c", "sleep 0.3; tty; stty size; exit 4"}, TTY: true,
		Streams: berthruntime.Streams{Stdout: &out, Resize: resize},
	})
	if err != nil || code != 4 {
		t.Fatalf("exec: %d %v", code, err)
	}
	got := strings.ReplaceAll(out.String(), "\r\n", "\n")
	if !strings.Contains(got, "/dev/pts/") || !strings.Contains(got, "40 100\n") {
		t.Errorf("tty exec output %q", got)
	}
}

func TestDefaultHostnameIsTheNodes(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)
	hn, _ := os.Hostname()
	if got := execOut(t, m, c.ID, "hostname"); got != hn {
		t.Errorf("hostname %q, node's %q", got, hn)
	}
	if got := execOut(t, m, c.ID, "readlink", "/proc/self/ns/uts"); got == hostNS("uts") {
		t.Error("the pod shares the host's UTS namespace")
	}
}

// TestResolvedUser: the runtime reports the user it resolved from the
// image's files (and the extra groups asked), keeps it across a restart,
// and serves the spec it created the container with.
func TestResolvedUser(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c, err := m.CreateContainer(t.Context(), berthruntime.ContainerConfig{
		SandboxID: sb.ID, Name: "user", Rootfs: overlay(t),
		Spec: spec.Container{Args: []string{"id"}, User: spec.User{Spec: "nobody", SupplementalGroups: []uint32{1234}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.RemoveContainer(ctx, c.ID); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	want := &berthruntime.User{UID: 65534, GID: 65534, AdditionalGIDs: []uint32{65534, 1234}}
	if !reflect.DeepEqual(c.User, want) {
		t.Errorf("created: user = %+v, want %+v", c.User, want)
	}
	sp, err := m.ContainerSpec(c.ID)
	if err != nil || sp.Process.User.UID != 65534 || !reflect.DeepEqual(sp.Process.Args, []string{"id"}) {
		t.Errorf("ContainerSpec = %+v, %v", sp, err)
	}
	m2 := openManager(t)
	got, err := m2.Container(c.ID)
	if err != nil || !reflect.DeepEqual(got.User, want) {
		t.Errorf("after reopen: user = %+v (%v), want %+v", got.User, err, want)
	}
	if _, err := m.ContainerSpec("no-such-container"); !errdefs.IsNotFound(err) {
		t.Errorf("ContainerSpec of an unknown container: %v, want NotFound", err)
	}
}
