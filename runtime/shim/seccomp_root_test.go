package shim_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/shim"
)

// seccompScript reports the process's seccomp mode and whether it may
// create a user namespace: no capability is needed for that, but the
// default profile allows unshare(2) only with CAP_SYS_ADMIN.
const seccompScript = "grep '^Seccomp:' /proc/self/status | tr -d '\\t '; unshare -U true 2>/dev/null && echo unshare=ok || echo unshare=denied"

// TestSeccompCache runs containers with the runtime default profile
// through a shared seccomp cache, cold then warm, and an exec in each:
// every process is filtered and the profile is compiled once.
func TestSeccompCache(t *testing.T) {
	needRoot(t)
	cache := filepath.Join(testRoot, "seccomp-cache")
	t.Cleanup(func() { os.RemoveAll(cache) })
	withDefault := func(s *specs.Spec) {
		p, err := mobyseccomp.GetDefaultProfile(s)
		if err != nil {
			t.Fatal(err)
		}
		s.Linux.Seccomp = p
	}

	// The control: without a profile the same script may unshare, so the
	// checks below can fail.
	plain := start(t, "seccomp-none", []string{"sh", "-c", seccompScript}, shim.StartOptions{SeccompCache: cache})
	if e := wait(t, plain); e.Code != 0 {
		t.Fatalf("unconfined container: exit %+v", e)
	}
	if out := logText(t, plain.log); out != "Seccomp:0\nunshare=ok\n" {
		t.Fatalf("unconfined container printed %q", out)
	}
	if files, _ := os.ReadDir(cache); len(files) != 0 {
		t.Fatalf("a container without a profile stored %d cache files", len(files))
	}

	var stored []byte
	for _, run := range []string{"cold", "warm"} {
		c := start(t, "seccomp-"+run, []string{"sh", "-c", seccompScript + "; sleep 1000"}, shim.StartOptions{SeccompCache: cache}, withDefault)
		waitFor(t, 10e9, func() bool { return strings.Contains(logText(t, c.log), "unshare=") })
		if out := logText(t, c.log); out != "Seccomp:2\nunshare=denied\n" {
			t.Fatalf("%s: container printed %q, want seccomp filter mode and unshare denied", run, out)
		}
		// exec's setns init loads the program from the container's state.
		var out bytes.Buffer
		e, err := c.Exec(t.Context(), shim.ExecOptions{
			Process: specs.Process{Args: []string{"sh", "-c", seccompScript}, Env: []string{"PATH=/bin"}, Cwd: "/"},
			Streams: shim.Streams{Stdout: &out},
		})
		if err != nil || e.Code != 0 || out.String() != "Seccomp:2\nunshare=denied\n" {
			t.Fatalf("%s: exec: exit %+v, %v, printed %q", run, e, err, out.String())
		}
		st, err := os.ReadFile(filepath.Join(c.state, "libcontainer", "seccomp-"+run, "state.json"))
		if err != nil || !bytes.Contains(st, []byte(`"berth_program":{"filter":"`)) {
			t.Fatalf("%s: the container's state has no compiled program (%v)", run, err)
		}

		files, err := os.ReadDir(cache)
		if err != nil || len(files) != 1 {
			t.Fatalf("%s: cache holds %d files (%v), want 1", run, len(files), err)
		}
		b, err := os.ReadFile(filepath.Join(cache, files[0].Name()))
		if err != nil {
			t.Fatal(err)
		}
		if run == "cold" {
			stored = b
			// Damage it: the warm container must not load it.
			if err := os.WriteFile(filepath.Join(cache, files[0].Name()), b[:len(b)/2], 0o600); err != nil {
				t.Fatal(err)
			}
		} else if !bytes.Equal(b, stored) {
			// Same profile, same program... unless runc's -ENOSYS stub
			// ordered its architectures the other way this time: the file
			// must at least be whole again.
			if len(b) != len(stored) {
				t.Fatalf("warm: the damaged cache file was not replaced by a whole one (%d bytes, first %d)", len(b), len(stored))
			}
		}
		if err := c.Signal(t.Context(), syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		wait(t, c)
	}

	// And a container that finds a good file uses it as it is.
	c := start(t, "seccomp-hot", []string{"sh", "-c", seccompScript}, shim.StartOptions{SeccompCache: cache}, withDefault)
	wait(t, c)
	if out := logText(t, c.log); out != "Seccomp:2\nunshare=denied\n" {
		t.Fatalf("hot: container printed %q", out)
	}
	files, _ := os.ReadDir(cache)
	info, _ := files[0].Info()
	before := info.ModTime()
	c = start(t, "seccomp-hot2", []string{"sh", "-c", seccompScript}, shim.StartOptions{SeccompCache: cache}, withDefault)
	wait(t, c)
	files, _ = os.ReadDir(cache)
	if info, _ := files[0].Info(); len(files) != 1 || !info.ModTime().Equal(before) {
		t.Fatal("a good cache file was written again")
	}
}

// logText is the stdout of a CRI log, lines joined.
func logText(t *testing.T, path string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return ""
	}
	var b strings.Builder
	for _, l := range readLog(t, path) {
		if s, ok := strings.CutPrefix(l, "stdout F "); ok {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}
