package libct

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// loadEnv makes the test binary a child that loads the seccomp config in
// the named file with libcontainer's InitSeccomp and execs sleep.
const loadEnv = "BERTH_TEST_SECCOMP_LOAD"

func TestMain(m *testing.M) {
	if path := os.Getenv(loadEnv); path != "" {
		loadAndSleep(path)
	}
	os.Exit(m.Run())
}

func loadAndSleep(path string) {
	// The filter is the calling thread's (runc's init is single-threaded);
	// the exec takes it along.
	goruntime.LockOSThread()
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	var sc configs.Seccomp
	if err := json.Unmarshal(b, &sc); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	if _, err := seccomp.InitSeccomp(&sc); err != nil {
		fmt.Fprintln(os.Stderr, "InitSeccomp:", err)
		os.Exit(3)
	}
	err = unix.Exec("/bin/sleep", []string{"sleep", "100"}, nil)
	fmt.Fprintln(os.Stderr, "exec sleep:", err)
	os.Exit(4)
}

// loaded is a filter as the kernel holds it.
type loaded struct {
	filter []byte
	flags  uint64 // what PTRACE_GET_SECCOMP_METADATA reports (LOG only)
}

// loadInChild has a child process load sc through InitSeccomp and reads
// the filter back from the kernel (PTRACE_SECCOMP_GET_FILTER).
func loadInChild(t *testing.T, sc *configs.Seccomp) loaded {
	t.Helper()
	b, err := json.Marshal(sc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seccomp.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), loadEnv+"="+path)
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// No cmd.Wait until the end: it would take the ptrace stop.
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "sleep" {
			break
		}
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); bytes.Contains(st, []byte(") Z ")) {
			t.Fatalf("child exited before exec: %s", stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("child did not exec sleep: %s", stderr.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if !strings.Contains(string(status), "\nSeccomp:\t2\n") {
		t.Fatalf("child is not in seccomp filter mode:\n%s", status)
	}

	// ptrace requests come from the thread that attached.
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		t.Fatalf("ptrace attach: %v", err)
	}
	defer unix.PtraceDetach(pid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, unix.WALL, nil); err != nil || !ws.Stopped() {
		t.Fatalf("wait for the traced child: %v (%v)", err, ws)
	}
	const getFilter, getMetadata = 0x420c, 0x420d // PTRACE_SECCOMP_GET_FILTER, PTRACE_GET_SECCOMP_METADATA
	n, _, errno := unix.Syscall6(unix.SYS_PTRACE, getFilter, uintptr(pid), 0, 0, 0, 0)
	if errno != 0 {
		t.Fatalf("PTRACE_SECCOMP_GET_FILTER: %v", errno)
	}
	// Index 0 is the newest filter: the one the child loaded.
	var l loaded
	l.filter = make([]byte, n*8)
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, getFilter, uintptr(pid), 0, uintptr(unsafe.Pointer(&l.filter[0])), 0, 0); errno != 0 {
		t.Fatalf("PTRACE_SECCOMP_GET_FILTER: %v", errno)
	}
	meta := struct{ filterOff, flags uint64 }{}
	if _, _, errno := unix.Syscall6(unix.SYS_PTRACE, getMetadata, uintptr(pid), unsafe.Sizeof(meta), uintptr(unsafe.Pointer(&meta)), 0, 0); errno != 0 {
		t.Fatalf("PTRACE_GET_SECCOMP_METADATA: %v", errno)
	}
	l.flags = meta.flags
	return l
}

// TestSeccompProgramIsUpstreams loads each test profile the upstream way
// (InitSeccomp compiling it) and the cached way (InitSeccomp loading
// Program) and compares what the kernel holds, byte for byte.
func TestSeccompProgramIsUpstreams(t *testing.T) {
	testutil.RequireRoot(t, "loads seccomp filters in child processes and reads them back with ptrace")
	needSeccomp(t)
	for name, sc := range testProfiles(t) {
		t.Run(name, func(t *testing.T) {
			variants := compilations(t, sc)
			upstream := loadInChild(t, sc)
			i := slices.IndexFunc(variants, func(p *configs.SeccompProgram) bool { return bytes.Equal(p.Filter, upstream.filter) })
			if i < 0 {
				t.Fatalf("the kernel holds a %d-instruction filter from upstream's path that Compile never made (%d variants of %d instructions)", len(upstream.filter)/8, len(variants), len(variants[0].Filter)/8)
			}
			for _, p := range variants {
				cached := *sc
				cached.Program = p
				got := loadInChild(t, &cached)
				if !bytes.Equal(got.filter, p.Filter) {
					t.Fatalf("the kernel holds a %d-instruction filter, not the %d-instruction Program", len(got.filter)/8, len(p.Filter)/8)
				}
				if got.flags != upstream.flags {
					t.Fatalf("filter flags %#x, upstream's %#x", got.flags, upstream.flags)
				}
			}
		})
	}
}
