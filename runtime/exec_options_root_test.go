package runtime_test

import (
	"bytes"
	"io"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	berthruntime "github.com/berth-dev/berth/runtime"
)

// TestExecOptions: an exec's env, user, working directory and
// capabilities replace the container's, and Started reports the
// process's host PID while it runs.
func TestExecOptions(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sleep", "1000"}})
	start(t, m, c.ID)

	var out bytes.Buffer
	var pid atomic.Int64
	var hostComm string
	// The process reads a line before it ends: Started's PID is checked
	// while it runs.
	stdinR, stdinW := io.Pipe()
	started := make(chan int, 1)
	go func() {
		p := <-started
		for range 100 {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(p) + "/cmdline")
			if hostComm = string(b); strings.HasPrefix(hostComm, "sh\x00") {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		stdinW.Write([]byte("go\n"))
		stdinW.Close()
	}()
	code, err := m.Exec(t.Context(), c.ID, berthruntime.ExecOptions{
		Cmd:     []string{"sh", "-c", `read x; echo "$FOO $PATH"; id -u; id -g; pwd`},
		Env:     []string{"FOO=bar", "PATH=/bin"},
		User:    "nobody",
		WorkDir: "/tmp",
		Started: func(p int) {
			pid.Store(int64(p))
			started <- p
		},
		Streams: berthruntime.Streams{Stdin: stdinR, Stdout: &out},
	})
	if err != nil || code != 0 {
		t.Fatalf("exec: %d %v", code, err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 || lines[0] != "bar /bin" || lines[1] != "65534" || lines[2] != "65534" || lines[3] != "/tmp" {
		t.Errorf("exec output:\n%s", out.String())
	}
	if pid.Load() <= 0 || !strings.HasPrefix(hostComm, "sh\x00-c") {
		t.Errorf("Started got pid %d whose command line is %q", pid.Load(), hostComm)
	}

	// All capabilities: CapEff has every bit the kernel knows.
	out.Reset()
	all := []string{"CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_CHOWN"}
	if _, err := m.Exec(t.Context(), c.ID, berthruntime.ExecOptions{
		Cmd: []string{"grep", "CapEff", "/proc/self/status"}, Capabilities: all, Streams: berthruntime.Streams{Stdout: &out},
	}); err != nil {
		t.Fatal(err)
	}
	// CAP_CHOWN is bit 0, NET_ADMIN 12, SYS_ADMIN 21.
	if f := strings.Fields(out.String()); len(f) != 2 || f[1] != "0000000000201001" {
		t.Errorf("capabilities: %q", out.String())
	}

	for _, o := range []berthruntime.ExecOptions{
		{Cmd: []string{"true"}, User: "nosuchuser"},
		{Cmd: []string{"true"}, WorkDir: "relative"},
		{Cmd: nil},
	} {
		if _, err := m.Exec(t.Context(), c.ID, o); err == nil {
			t.Errorf("exec %+v succeeded", o)
		} else if !errdefs.IsNotFound(err) && !errdefs.IsInvalidArgument(err) {
			t.Errorf("exec %+v: %v, want NotFound or InvalidArgument", o, err)
		}
	}
}

// TestContainerCgroupStats: the figures Docker's stats need come through,
// without the writable layer's walk.
func TestContainerCgroupStats(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	c := newContainer(t, m, sb, ctrOpts{args: []string{"sh", "-c", "echo x > /tmp/f; exec sleep 1000"}, mem: 64 << 20})
	start(t, m, c.ID)
	rc, err := m.Container(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		_, err := os.Stat(rc.UpperDir + "/tmp/f")
		return err == nil
	})
	st, err := m.ContainerCgroupStats(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.MemoryLimit != 64<<20 || st.CPUUsage == 0 || st.Pids == 0 || st.WritableLayerBytes != 0 {
		t.Errorf("stats: limit %d cpu %d pids %d layer %d", st.MemoryLimit, st.CPUUsage, st.Pids, st.WritableLayerBytes)
	}
	_, v1 := st.MemoryStat["total_inactive_file"]
	_, v2 := st.MemoryStat["inactive_file"]
	if !v1 && !v2 {
		t.Errorf("memory.stat has no inactive_file: %v", st.MemoryStat)
	}
	found := false
	for _, p := range st.Processes {
		found = found || p == rc.Pid
	}
	if !found {
		t.Errorf("processes %v lack the init %d", st.Processes, rc.Pid)
	}
	full, err := m.ContainerStats(t.Context(), c.ID)
	if err != nil || full.WritableLayerBytes == 0 {
		t.Errorf("ContainerStats: layer %d, %v", full.WritableLayerBytes, err)
	}
	ifs, err := m.SandboxNetworkStats(t.Context(), sb.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		if i.Name == "lo" {
			t.Errorf("lo reported: %+v", ifs)
		}
	}
}
