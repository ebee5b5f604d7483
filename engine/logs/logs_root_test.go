package logs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/internal/logtest"
	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// Root tests: real containers through berth-shim writing the log files
// engine/logs reads and forwards.

var (
	shimBinary string
	// rootDir holds the shims, bundles and state; removed at the end.
	rootDir      string
	cgroupParent = fmt.Sprintf("/berth-logs-test-%d", os.Getpid())
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "berth-logs-test-")
	if err != nil {
		panic(err)
	}
	rootDir = dir
	if shimBinary, err = shimbuild.Build(dir); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	// libcontainer leaves the parent cgroup of the containers behind.
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupParent)
	for _, c := range cgs {
		if err := os.Remove(c); err != nil {
			fmt.Println("leftover cgroup:", err)
			code = 1
		}
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// bundle writes a busybox rootfs (every applet) and a config.json
// running args.
func bundle(t *testing.T, name string, args []string) string {
	t.Helper()
	testutil.LookPath(t, "busybox", "apt-get install busybox-static")
	b := filepath.Join(rootDir, "bundles", name)
	if err := writeBundle(b, name, args); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(b) })
	return b
}

func writeBundle(b, name string, args []string) error {
	rootfs := filepath.Join(b, "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			return err
		}
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin/busybox"), bb, 0o755); err != nil {
		return err
	}
	list, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return err
	}
	for _, a := range strings.Fields(string(list)) {
		if a != "busybox" {
			os.Symlink("busybox", filepath.Join(rootfs, "bin", a))
		}
	}
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETGID", "CAP_SETUID", "CAP_KILL"}
	spec := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args, Env: []string{"PATH=/bin"}, Cwd: "/", NoNewPrivileges: true,
			Capabilities: &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "mode=755"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupParent + "/" + name,
			Namespaces:  []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.MountNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}},
			Resources:   &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}},
		},
	}
	js, _ := json.Marshal(spec)
	return os.WriteFile(filepath.Join(b, "config.json"), js, 0o644)
}

// run starts a container whose shim logs as the Manager says for c.
func run(t *testing.T, m *Manager, c Container, args []string) *shim.Client {
	t.Helper()
	path, lc, err := m.RuntimeLog(c)
	if err != nil {
		t.Fatal(err)
	}
	if path != "" {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	name := filepath.Base(c.Dir)
	state := filepath.Join(rootDir, "s", name)
	cl, err := shim.Start(t.Context(), shim.StartOptions{
		Binary: shimBinary, ID: name, Bundle: bundle(t, name, args), StateDir: state, LogPath: path, Log: wireLog(lc),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := cl.Delete(ctx, shim.DeleteOptions{Force: true}); err != nil {
			t.Errorf("delete: %v", err)
		}
		if err := cl.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		os.RemoveAll(state)
	})
	return cl
}

// wireLog is what runtime.Manager hands the shim for lc.
func wireLog(lc runtime.LogConfig) wire.Log {
	return wire.Log{Format: lc.Format, MaxSize: lc.MaxSize, MaxFiles: lc.MaxFiles, Compress: lc.Compress, Attrs: lc.Attrs, NonBlocking: lc.NonBlocking, MaxBuffer: lc.MaxBuffer}
}

func rootCtr(t *testing.T, m *Manager, name string, lc container.LogConfig) Container {
	t.Helper()
	testutil.RequireRoot(t, "runs containers through berth-shim")
	c := ctrWith(t, m, lc)
	// The shim's state dir and cgroup are named after the directory.
	dir := filepath.Join(rootDir, "c", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.Dir = dir
	return c
}

func waitExit(t *testing.T, cl *shim.Client, within time.Duration) wire.Exit {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), within)
	defer cancel()
	e, err := cl.Wait(ctx)
	if err != nil {
		t.Fatalf("container did not exit within %v: %v", within, err)
	}
	return e
}

// TestDeadEndpointDoesNotBlockContainer: a container writes 100 MB while
// its gelf (TCP) or fluentd endpoint refuses connections: it runs to its
// end at the disk's pace (the shim writes the cache; berthd forwards from
// it), docker logs reads the cache meanwhile, and the forwarder is still
// retrying.
func TestDeadEndpointDoesNotBlockContainer(t *testing.T) {
	const script = `yes "$(printf '%099d' 7)" | head -c 100000000; echo done`
	base := time.Duration(0)
	for _, tc := range []struct {
		name string
		lc   container.LogConfig
	}{
		{"none", container.LogConfig{Type: None}},
		{"gelf-tcp", container.LogConfig{Type: GELF, Config: map[string]string{"gelf-address": "tcp://" + freeAddr(t)}}},
		{"fluentd-blocking", container.LogConfig{Type: Fluentd, Config: map[string]string{"fluentd-address": freeAddr(t), "mode": "blocking"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, DefaultConfig())
			c := rootCtr(t, m, "dead-"+tc.name, tc.lc)
			start := time.Now()
			cl := run(t, m, c, []string{"sh", "-c", script})
			if err := m.Start(c); err != nil {
				t.Fatal(err)
			}
			e := waitExit(t, cl, 3*time.Minute)
			took := time.Since(start)
			if e.Code != 0 {
				t.Fatalf("exit %+v", e)
			}
			if tc.lc.Type == None {
				base = took
				t.Logf("100 MB with log driver none: %v", took)
				return
			}
			t.Logf("100 MB with a dead %s endpoint: %v (none: %v)", tc.name, took, base)
			if !m.Forwarding(c.ID) {
				t.Error("forwarder gave up")
			}
			var tail syncBuffer
			if err := m.Read(t.Context(), c, ReadOptions{Stdout: true, Tail: 2}, &tail); err != nil {
				t.Fatal(err)
			}
			out, _ := demux(t, tail.Bytes())
			if want := strings.Repeat("0", 98) + "7\n"; !strings.HasSuffix(out, "done\n") || !strings.Contains(out, strings.Repeat("0", 98)+"7") || len(out) > len(want)+5+10 {
				t.Errorf("docker logs --tail 2 of the cache: %q", out)
			}
			m.Stop(c.ID)
			m.Remove(c.ID)
		})
	}
}

// TestFollowRealShim: docker logs -f of a real container follows its
// json-file across the shim's rotations and compressions, every line
// once and in order, and ends when the container exits.
func TestFollowRealShim(t *testing.T) {
	m := newManager(t, DefaultConfig())
	c := rootCtr(t, m, "follow", container.LogConfig{Type: JSONFile, Config: map[string]string{"max-size": "64k", "max-file": "100", "compress": "true"}})
	const n = 30000
	stopped := make(chan struct{})
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- m.Read(t.Context(), c, ReadOptions{Stdout: true, Stderr: true, Tail: -1, Follow: true, Stopped: stopped}, &out)
	}()
	cl := run(t, m, c, []string{"sh", "-c", "i=0; while [ $i -lt " + strconv.Itoa(n) + " ]; do echo line $i; i=$((i+1)); done"})
	waitExit(t, cl, time.Minute)
	close(stopped)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("follow did not end after the exit")
	}
	files, _ := filepath.Glob(filepath.Join(c.Dir, c.ID+"-json.log.*.gz"))
	if len(files) < 3 {
		t.Errorf("only %d rotated files: rotation not exercised", len(files))
	}
	got, _ := demux(t, out.Bytes())
	if got != lines(0, n) {
		t.Fatalf("followed %d bytes, want %d", len(got), len(lines(0, n)))
	}
}

// TestForwardFromRealShim: a container's output reaches a live fluentd
// endpoint through the shim's cache.
func TestForwardFromRealShim(t *testing.T) {
	m := newManager(t, DefaultConfig())
	srv := logtest.NewFluentd(t, "127.0.0.1:0", false)
	c := rootCtr(t, m, "fwd", container.LogConfig{Type: Fluentd, Config: map[string]string{"fluentd-address": srv.Addr()}})
	cl := run(t, m, c, []string{"sh", "-c", "echo out; echo err >&2; echo again"})
	if err := m.Start(c); err != nil {
		t.Fatal(err)
	}
	waitExit(t, cl, time.Minute)
	m.Stop(c.ID)
	got := receive(t, srv.Events, 3, 20*time.Second)
	var logs []string
	for _, e := range got {
		logs = append(logs, e.Record["source"].(string)+":"+e.Record["log"].(string))
	}
	// stdout and stderr are two pipes: their order between them is the
	// shim's reading order, within each it is kept.
	j := strings.Join(logs, "|")
	if !strings.Contains(j, "stdout:out") || !strings.Contains(j, "stderr:err") || strings.Index(j, "stdout:out") > strings.Index(j, "stdout:again") {
		t.Errorf("received %q", logs)
	}
	waitNotForwarding(t, m, c.ID)
}

// BenchmarkShimLogThroughput: a container writes 64 MB of 100-byte lines
// through berth-shim into each driver's file (none: the shim reads and
// discards); MB/s is what the container sees, start to exit.
//
//	go test -run XXX -bench BenchmarkShimLogThroughput -benchtime 3x ./engine/logs
func BenchmarkShimLogThroughput(b *testing.B) {
	testutil.RequireRoot(b, "runs containers through berth-shim")
	const size = 64 << 20
	script := `yes "$(printf '%099d' 7)" | head -c ` + strconv.Itoa(size)
	for _, tc := range []struct {
		name string
		lc   container.LogConfig
	}{
		{"none", container.LogConfig{Type: None}},
		{"json-file", container.LogConfig{Type: JSONFile, Config: map[string]string{}}},
		{"json-file-rotated", container.LogConfig{Type: JSONFile, Config: map[string]string{"max-size": "10m", "max-file": "5", "compress": "true"}}},
		{"local", container.LogConfig{Type: Local}},
		{"json-file-nonblocking", container.LogConfig{Type: JSONFile, Config: map[string]string{"mode": "non-blocking", "max-buffer-size": "4m"}}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m, err := New(Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			lc, err := m.Resolve(tc.lc)
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(size)
			for i := 0; b.Loop(); i++ {
				dir := filepath.Join(rootDir, "c", fmt.Sprintf("bench-%s-%d", tc.name, i))
				if err := os.MkdirAll(dir, 0o755); err != nil {
					b.Fatal(err)
				}
				c := Container{ID: strings.Repeat("b", 64), Name: "/bench", Dir: dir, LogConfig: lc}
				cl := runB(b, m, c, []string{"sh", "-c", script})
				ctx, cancel := context.WithTimeout(b.Context(), 5*time.Minute)
				e, err := cl.Wait(ctx)
				cancel()
				if err != nil || e.Code != 0 {
					b.Fatalf("exit %+v %v", e, err)
				}
				b.StopTimer()
				stopB(b, cl)
				os.RemoveAll(dir)
				b.StartTimer()
			}
		})
	}
}

// runB is run for a benchmark: no cleanup registered, stopB undoes it.
func runB(b *testing.B, m *Manager, c Container, args []string) *shim.Client {
	path, lc, err := m.RuntimeLog(c)
	if err != nil {
		b.Fatal(err)
	}
	if path != "" {
		os.MkdirAll(filepath.Dir(path), 0o755)
	}
	name := filepath.Base(c.Dir)
	bdir := filepath.Join(rootDir, "bundles", name)
	if err := writeBundle(bdir, name, args); err != nil {
		b.Fatal(err)
	}
	cl, err := shim.Start(b.Context(), shim.StartOptions{
		Binary: shimBinary, ID: name, Bundle: bdir, StateDir: filepath.Join(rootDir, "s", name), LogPath: path, Log: wireLog(lc),
	})
	if err != nil {
		b.Fatal(err)
	}
	return cl
}

func stopB(b *testing.B, cl *shim.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Delete(ctx, shim.DeleteOptions{Force: true}); err != nil {
		b.Fatal(err)
	}
	if err := cl.Shutdown(ctx); err != nil {
		b.Fatal(err)
	}
	os.RemoveAll(cl.StateDir())
}
