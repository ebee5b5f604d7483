package runtime_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	berthruntime "github.com/berth-dev/berth/runtime"
)

// createSandboxHelperMode makes the test binary a berthd that creates one
// pod (configured by the environment) and waits to be killed.
const createSandboxHelperMode = "create-sandbox"

func createSandboxHelper() int {
	cfg := berthruntime.Config{
		Root: os.Getenv("BERTH_RT_ROOT"), StateDir: os.Getenv("BERTH_RT_STATE"), ShimBinary: os.Getenv("BERTH_RT_SHIM"),
	}
	ctx := context.Background()
	m, err := berthruntime.Open(ctx, cfg)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	sc := berthruntime.SandboxConfig{
		Name: "gap", Namespace: "test", CgroupParent: os.Getenv("BERTH_RT_CGROUP"),
		Namespaces: berthruntime.SandboxNamespaces{PID: berthruntime.NamespacePod},
	}
	if os.Getenv("BERTH_RT_USERNS") != "" {
		mapping := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
		sc.UserNS = &berthruntime.UserNamespace{UIDMappings: mapping, GIDMappings: mapping}
	}
	sb, err := m.CreateSandbox(ctx, sc)
	if err != nil {
		fmt.Println("error:", err)
		return 1
	}
	fmt.Println("created", sb.ID)
	select {}
}

// TestKill9BeforePauseRecorded kills berthd (a helper process running a
// Manager) with SIGKILL while CreateSandbox has started the pod's pause
// holder and is opening the file that puts the holder's PID on record: the
// pending record on disk still names no holder. The next Open undoes the
// half-created pod, and no holder may outlive that: a restarted berthd
// that cannot find one could never kill it (a process and the namespaces
// it holds, leaked for good).
//
// The moment is caught for sure, with no hook in the runtime: the record
// directory is a tmpfs watched by fanotify for opens, whose permission
// events hold each open until the test answers; the helper's second
// sandbox record is the one after the holder's start.
func TestKill9BeforePauseRecorded(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name   string
		userNS bool
	}{
		{"pod-pid-namespace", false}, // the holder is started inside the pinned namespaces
		{"user-namespace", true},     // the holder creates the namespaces, pinned after it
	} {
		t.Run(tc.name, func(t *testing.T) { kill9BeforePauseRecorded(t, tc.userNS) })
	}
}

func kill9BeforePauseRecorded(t *testing.T, userNS bool) {
	cfg := testConfig()
	cfg.Root = t.TempDir()
	if err := unix.Mount("tmpfs", cfg.Root, "tmpfs", 0, "mode=0711"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(cfg.Root, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount the record tmpfs: %v", err)
		}
	})
	gate := watchOpens(t, cfg.Root)
	parent := cgroupParent()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+createSandboxHelperMode,
		"BERTH_RT_ROOT="+cfg.Root, "BERTH_RT_STATE="+cfg.StateDir, "BERTH_RT_SHIM="+cfg.ShimBinary, "BERTH_RT_CGROUP="+parent)
	if userNS {
		cmd.Env = append(cmd.Env, "BERTH_RT_USERNS=1")
	}
	// A file, not a pipe: the helper's children could hold a pipe open.
	out, err := os.CreateTemp(t.TempDir(), "helper-out")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	helper := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	// First: a helper that waits for the gate dies only once let through.
	defer gate.close()

	// The first sandbox record is the pending one written before the
	// namespaces and the holder; the second is the holder's.
	var id string
	var holders []proc
	notes := 0
	err = gate.each(30*time.Second, func(pid int, path string) (stop bool) {
		if pid != helper || !strings.HasPrefix(filepath.Base(path), ".sandbox.json.tmp-") {
			return false
		}
		if notes++; notes < 2 {
			return false
		}
		id = filepath.Base(filepath.Dir(path))
		holders = pauseChildren(helper)
		// berthd dies here, before its open of the record returns.
		if err := unix.Kill(helper, unix.SIGKILL); err != nil {
			t.Fatal(err)
		}
		return true
	})
	if err != nil {
		said, _ := os.ReadFile(out.Name())
		t.Fatalf("%v; helper said: %s", err, said)
	}
	<-exited
	gate.close()
	// Read once the helper is dead (the test's own opens on the mount
	// wait for the gate too): the record as the crash left it.
	var rec map[string]any
	b, err := os.ReadFile(filepath.Join(cfg.Root, "sandboxes", id, "sandbox.json"))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if pid, _ := rec["PausePid"].(float64); err != nil || rec["Pending"] != true || pid != 0 {
		t.Errorf("record on disk at the crash: %s %v; want pending, naming no holder", b, err)
	}
	if len(holders) != 1 {
		t.Fatalf("pause holders started by the helper at the crash: %v, want one", holders)
	}
	t.Cleanup(func() {
		for _, h := range holders {
			if h.alive() {
				unix.Kill(h.pid, unix.SIGKILL)
			}
		}
	})

	m, err := berthruntime.Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Sandbox(id); !errdefs.IsNotFound(err) {
		t.Errorf("half-created sandbox after Open: %v", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for holders[0].alive() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if holders[0].alive() {
		t.Errorf("pause holder %d outlived berthd's crash and the next Open: nothing can find it any more", holders[0].pid)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, id) {
			t.Errorf("mount left: %s", l)
		}
	}
	if dirs, _ := filepath.Glob("/sys/fs/cgroup/*" + parent); len(dirs) > 0 {
		t.Errorf("cgroups left: %v", dirs)
	}
}

// proc is a process told apart from a later one with its PID by its start
// time.
type proc struct {
	pid   int
	start string
}

func procStartTime(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || f[0] == "Z" {
		return ""
	}
	return f[19]
}

func (p proc) alive() bool {
	return p.start != "" && procStartTime(p.pid) == p.start
}

// pauseChildren lists parent's children that run the shim's pause mode.
func pauseChildren(parent int) []proc {
	var out []proc
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, s := range stats {
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(s)))
		b, err := os.ReadFile(s)
		if err != nil {
			continue
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) < 2 || f[1] != strconv.Itoa(parent) {
			continue
		}
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		args, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if argv := strings.Split(string(args), "\x00"); exe == shimBinary && len(argv) > 1 && argv[1] == "pause" {
			out = append(out, proc{pid: pid, start: procStartTime(pid)})
		}
	}
	return out
}

// openGate holds every open of a file on a mount until the test has seen
// it (fanotify permission events).
type openGate struct {
	f *os.File
}

func watchOpens(t *testing.T, mount string) *openGate {
	t.Helper()
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK, unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC)
	if err != nil {
		t.Fatalf("fanotify (needs CONFIG_FANOTIFY_ACCESS_PERMISSIONS): %v", err)
	}
	g := &openGate{f: os.NewFile(uintptr(fd), "fanotify")}
	t.Cleanup(g.close)
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, unix.FAN_OPEN_PERM, unix.AT_FDCWD, mount); err != nil {
		t.Fatalf("fanotify mark %s: %v", mount, err)
	}
	return g
}

// each calls fn with the opener and the path of each open, which goes
// ahead once fn returns, until fn returns true.
func (g *openGate) each(timeout time.Duration, fn func(pid int, path string) (stop bool)) error {
	g.f.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 4096)
	for {
		n, err := g.f.Read(buf)
		if err != nil {
			return fmt.Errorf("wait for opens: %w", err)
		}
		stop := false
		for off := 0; off+unix.FAN_EVENT_METADATA_LEN <= n; {
			ev := *(*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[off]))
			off += int(ev.Event_len)
			if ev.Fd < 0 {
				continue
			}
			path, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", ev.Fd))
			if !stop {
				stop = fn(int(ev.Pid), path)
			}
			resp := make([]byte, 8)
			binary.NativeEndian.PutUint32(resp, uint32(ev.Fd))
			binary.NativeEndian.PutUint32(resp[4:], unix.FAN_ALLOW)
			// An opener killed meanwhile is no longer waiting: ENOENT.
			g.f.Write(resp)
			unix.Close(int(ev.Fd))
		}
		if stop {
			return nil
		}
	}
}

// close lets every open through from now on.
func (g *openGate) close() { g.f.Close() }
