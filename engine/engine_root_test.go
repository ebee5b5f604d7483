package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/engine/events"
	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/shimbuild"
	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime"
)

var shim shimbuild.Once

func TestMain(m *testing.M) {
	code := m.Run()
	shim.Remove()
	os.Exit(code)
}

// env is an engine on real parts: a runtime with berth-shim, an image
// store with busybox pulled from an in-process registry, volumes, logs.
type env struct {
	t       *testing.T
	dir     string
	images  *imagestore.Store
	rt      *runtime.Manager
	volumes *volume.Store
	bus     *events.Bus
	e       *Engine
	image   string
	// ids are the containers and sandboxes the test made, whose cgroups
	// the cleanup checks.
	ids []string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	testutil.RequireRoot(t, "runs containers: namespaces, overlay mounts, cgroups")
	shim.Path(t)
	// Short: shim sockets live below the state dir.
	dir, err := os.MkdirTemp("", "beng-")
	if err != nil {
		t.Fatal(err)
	}
	v := &env{t: t, dir: dir}
	t.Cleanup(v.cleanup)
	v.images, err = imagestore.Open(t.Context(), imagestore.Config{Root: filepath.Join(dir, "root"), StallTimeout: time.Minute, MaxConcurrentDownloads: 3})
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	v.image = strings.TrimPrefix(reg.URL, "http://") + "/berth/busybox:latest"
	if err := testimage.Push(t.Context(), testimage.Require(t, testimage.Busybox), v.image); err != nil {
		t.Fatal(err)
	}
	if _, err := v.images.Pull(t.Context(), v.image, imagestore.PullOptions{}); err != nil {
		t.Fatal(err)
	}
	v.open()
	return v
}

// open opens (or reopens, as berthd after a crash) the runtime and the
// engine on the same directories.
func (v *env) open() {
	v.t.Helper()
	var err error
	v.rt, err = runtime.Open(v.t.Context(), runtime.Config{Root: filepath.Join(v.dir, "root", "runtime"), StateDir: filepath.Join(v.dir, "run"), ShimBinary: shim.Path(v.t)})
	if err != nil {
		v.t.Fatal(err)
	}
	if v.volumes, err = volume.Open(filepath.Join(v.dir, "root", "volumes")); err != nil {
		v.t.Fatal(err)
	}
	lm, err := logs.New(logs.Options{})
	if err != nil {
		v.t.Fatal(err)
	}
	v.bus = events.New()
	v.e, err = Open(v.t.Context(), Options{
		Config:  Config{Root: filepath.Join(v.dir, "root", "engine")},
		Runtime: v.rt.Owned(runtime.OwnerEngine), Images: v.images, Volumes: v.volumes, Events: v.bus, Logs: lm,
	})
	if err != nil {
		v.t.Fatal(err)
	}
}

// crash drops the engine and runtime as kill -9 would: nothing is undone,
// shims and containers keep running.
func (v *env) crash() {
	v.e.Close()
	v.rt.Close()
}

func (v *env) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if v.e != nil {
		for _, c := range v.e.List(ctx) {
			v.ids = append(v.ids, c.ID)
			if err := v.e.Remove(ctx, c.ID, RemoveOptions{Force: true, Volumes: true}); err != nil {
				v.t.Errorf("cleanup: remove %s: %v", c.ID[:12], err)
			}
		}
		v.e.Close()
	}
	if v.rt != nil {
		v.rt.Close()
	}
	if v.images != nil {
		v.images.Close()
	}
	v.checkNoLeftovers()
	os.RemoveAll(v.dir)
}

// checkNoLeftovers fails the test on anything of its containers that
// Remove (or Open's recovery after a crash test) left: a mount under the
// test's directory, namespace pins included, a process serving it (a
// shim), a cgroup of one of its containers. Nothing is expected: the
// engine's removal unpins a sandbox's namespaces, unmounts its rootfs and
// shm and removes its cgroups. What it finds it clears, so that a leak
// fails its own test and burdens no other.
func (v *env) checkNoLeftovers() {
	v.t.Helper()
	for _, pid := range processesUnder(v.dir) {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		v.t.Errorf("leftover process %d (%s)", pid, strings.TrimSpace(string(comm)))
		syscall.Kill(pid, syscall.SIGKILL)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var left []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], v.dir+"/") {
			left = append(left, f[4])
		}
	}
	for i := len(left) - 1; i >= 0; i-- {
		v.t.Errorf("leftover mount %s", left[i])
		syscall.Unmount(left[i], syscall.MNT_DETACH)
	}
	for _, id := range v.ids {
		pods, _ := filepath.Glob("/sys/fs/cgroup/*/berth-pod-" + id[:16])
		if unified, _ := filepath.Glob("/sys/fs/cgroup/berth-pod-" + id[:16]); len(unified) > 0 {
			pods = append(pods, unified...)
		}
		for _, pod := range pods {
			v.t.Errorf("leftover cgroup %s", pod)
			children, _ := filepath.Glob(pod + "/berth-*")
			for _, c := range children {
				syscall.Rmdir(c)
			}
			syscall.Rmdir(pod)
		}
	}
}

// processesUnder lists the processes but this one whose command line
// names dir or that hold a file below it open: the shims of a runtime on
// dir (a shim started on standby names no path, but holds its state
// directory's log once it serves a container).
func processesUnder(dir string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if strings.Contains(string(cmdline), dir+"/") {
			out = append(out, pid)
			continue
		}
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, dir+"/") {
				out = append(out, pid)
				break
			}
		}
	}
	return out
}

func (v *env) create(o CreateOptions) string {
	v.t.Helper()
	if o.Config.Image == "" {
		o.Config.Image = v.image
	}
	res, err := v.e.Create(v.t.Context(), o)
	if err != nil {
		v.t.Fatal(err)
	}
	v.ids = append(v.ids, res.ID)
	return res.ID
}

func (v *env) wait(id string, cond container.WaitCondition) int {
	v.t.Helper()
	ch, err := v.e.Wait(v.t.Context(), id, cond)
	if err != nil {
		v.t.Fatal(err)
	}
	select {
	case r := <-ch:
		return r.StatusCode
	case <-time.After(30 * time.Second):
		v.t.Fatalf("%s did not reach %s", id[:12], cond)
	}
	return -1
}

func (v *env) logs(id string) string {
	v.t.Helper()
	var raw bytes.Buffer
	if err := v.e.Logs(v.t.Context(), id, logs.ReadOptions{Stdout: true, Stderr: true, Tail: -1}, &raw); err != nil {
		v.t.Fatal(err)
	}
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, &raw); err != nil {
		v.t.Fatal(err)
	}
	return out.String()
}

// snapshots lists the image store's snapshots.
func (v *env) snapshots() []string {
	s, err := v.images.Snapshots(v.t.Context())
	if err != nil {
		v.t.Fatal(err)
	}
	return s
}

// TestLifecycle: create, start, wait, logs, restart by the user, remove;
// nothing of the container is left.
func TestLifecycle(t *testing.T) {
	v := newEnv(t)
	id := v.create(CreateOptions{Name: "one", Config: &container.Config{Cmd: []string{"sh", "-c", "echo hello $N; exit 4"}, Env: []string{"N=1"}}})
	if c, _ := v.e.Inspect(t.Context(), "one"); c.State.Status != container.StateCreated || c.Name != "one" {
		t.Fatalf("after create: %+v", c.State)
	}
	if err := v.e.Start(t.Context(), "one"); err != nil {
		t.Fatal(err)
	}
	if code := v.wait(id, container.WaitConditionNotRunning); code != 4 {
		t.Errorf("exit code %d", code)
	}
	if err := v.e.Start(t.Context(), id[:12]); err != nil {
		t.Fatal(err)
	}
	v.wait(id, container.WaitConditionNotRunning)
	if got := v.logs(id); got != "hello 1\nhello 1\n" {
		t.Errorf("logs %q", got)
	}
	c, _ := v.e.Inspect(t.Context(), id)
	if c.State.Status != container.StateExited || c.State.ExitCode != 4 || c.RestartCount != 0 {
		t.Errorf("inspect after two runs: %+v, restarts %d", c.State, c.RestartCount)
	}
	if err := v.e.Remove(t.Context(), "one", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := v.e.Inspect(t.Context(), id); !errdefs.IsNotFound(err) {
		t.Errorf("inspect after remove: %v", err)
	}
	if s := v.snapshots(); len(s) != 0 {
		t.Errorf("snapshots left: %v", s)
	}
	if _, err := os.Stat(v.e.containerDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("container dir left: %v", err)
	}
	if l := v.rt.ListContainers(); len(l) != 0 {
		t.Errorf("runtime containers left: %d", len(l))
	}
}

// TestOpenUndoesPendingCreate: a creation that berthd died in (its record
// pending, some of its parts made) is undone by the next Open, and its
// name is free again.
func TestOpenUndoesPendingCreate(t *testing.T) {
	v := newEnv(t)
	// The first steps of a creation, as Create makes them, then a crash.
	id := newID()
	v.ids = append(v.ids, id)
	anon := newID()
	mp := MountPoint{Anonymous: true}
	mp.Type, mp.Name, mp.Destination = mount.TypeVolume, anon, "/anon"
	c := &ctr{changed: make(chan struct{}), rec: record{
		ID: id, Name: "halfway", Created: time.Now(), Path: "sleep", Args: []string{"9"},
		Config: &container.Config{Image: v.image}, HostConfig: &container.HostConfig{},
		Mounts: []MountPoint{mp}, Pending: true,
	}}
	if err := os.MkdirAll(v.e.containerDir(id), 0o711); err != nil {
		t.Fatal(err)
	}
	if err := v.e.note(c); err != nil {
		t.Fatal(err)
	}
	if _, err := v.volumes.Create(t.Context(), volume.CreateOptions{Name: anon, Labels: map[string]string{volume.AnonymousLabel: ""}}); err != nil {
		t.Fatal(err)
	}
	img, _ := v.images.Get(t.Context(), v.image)
	rootfs, err := v.images.Prepare(t.Context(), id, img.ID.String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.rt.Owned(runtime.OwnerEngine).CreateSandbox(t.Context(), runtime.SandboxConfig{ID: id, Name: id, Namespace: "engine",
		Namespaces: runtime.SandboxNamespaces{PID: runtime.NamespaceContainer}}); err != nil {
		t.Fatal(err)
	}
	rc := runtime.ContainerConfig{ID: id, SandboxID: id, Name: "halfway", Rootfs: []runtime.Mount{{Type: rootfs[0].Type, Source: rootfs[0].Source, Options: rootfs[0].Options}}}
	rc.Spec.Args = []string{"sleep", "9"}
	if _, err := v.rt.Owned(runtime.OwnerEngine).CreateContainer(t.Context(), rc); err != nil {
		t.Fatal(err)
	}
	v.crash()
	v.open()

	if _, err := v.e.Inspect(t.Context(), "halfway"); !errdefs.IsNotFound(err) {
		t.Errorf("the half-made container is visible: %v", err)
	}
	if _, err := os.Stat(v.e.containerDir(id)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("its record is left: %v", err)
	}
	if l := v.rt.ListContainers(); len(l) != 0 {
		t.Errorf("its runtime container is left: %d", len(l))
	}
	if l := v.rt.ListSandboxes(); len(l) != 0 {
		t.Errorf("its sandbox is left: %d", len(l))
	}
	if s := v.snapshots(); len(s) != 0 {
		t.Errorf("its snapshot is left: %v", s)
	}
	if _, err := v.volumes.Get(anon); !errdefs.IsNotFound(err) {
		t.Errorf("its anonymous volume is left: %v", err)
	}
	// The name is free.
	v.create(CreateOptions{Name: "halfway", Config: &container.Config{Cmd: []string{"true"}}})
}

// TestOpenFinishesRemoval: a removal berthd died in is finished by the
// next Open.
func TestOpenFinishesRemoval(t *testing.T) {
	v := newEnv(t)
	id := v.create(CreateOptions{Name: "going", Config: &container.Config{Cmd: []string{"sleep", "300"}, Volumes: map[string]struct{}{"/anon": {}}}})
	if err := v.e.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	c, _ := v.e.lookup(id)
	// What remove does first, then the crash.
	if err := v.e.update(c, func(r *record) { r.Removing = true; r.RemoveVolumes = true }); err != nil {
		t.Fatal(err)
	}
	v.crash()
	v.open()
	if _, err := v.e.Inspect(t.Context(), id); !errdefs.IsNotFound(err) {
		t.Errorf("inspect after the finished removal: %v", err)
	}
	if l := v.rt.ListContainers(); len(l) != 0 {
		t.Errorf("runtime containers left: %d", len(l))
	}
	if s := v.snapshots(); len(s) != 0 {
		t.Errorf("snapshots left: %v", s)
	}
	if l := v.volumes.List(); len(l) != 0 {
		t.Errorf("volumes left: %+v", l)
	}
	if res, err := v.e.Create(t.Context(), CreateOptions{Name: "going", Config: &container.Config{Image: v.image, Cmd: []string{"true"}}}); err != nil {
		t.Errorf("name not freed: %v", err)
	} else {
		v.ids = append(v.ids, res.ID)
	}
}

// TestPolicyAfterRestart: an exit while no engine ran is handled by the
// next Open: the policy restarts with its backoff kept in the record, and
// the die event is published.
func TestPolicyAfterRestart(t *testing.T) {
	v := newEnv(t)
	id := v.create(CreateOptions{Name: "flaky", Config: &container.Config{Cmd: []string{"sh", "-c", "echo run; sleep 300"}},
		HostConfig: &container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "on-failure", MaximumRetryCount: 5}}})
	if err := v.e.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	// The first run's line first: a kill before the shell's echo would
	// leave one line in all.
	for deadline := time.Now().Add(10 * time.Second); v.logs(id) != "run\n"; {
		if time.Now().After(deadline) {
			t.Fatalf("first run: logs %q", v.logs(id))
		}
		time.Sleep(20 * time.Millisecond)
	}
	c, _ := v.e.Inspect(t.Context(), id)
	v.crash()
	if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	v.open()
	past, _ := v.bus.Subscribe(t.Context(), time.Unix(0, 1))
	var sawDie bool
	for _, m := range past {
		sawDie = sawDie || (m.Action == "die" && m.Actor.ID == id && m.Actor.Attributes["exitCode"] == "137")
	}
	if !sawDie {
		t.Errorf("no die event for the exit while down: %+v", past)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := v.e.Inspect(t.Context(), id)
		if err == nil && c.State.Running && c.RestartCount == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not restarted: %+v %v", c, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c2, _ := v.e.lookup(id)
	v.e.mu.Lock()
	backoff := c2.rec.Backoff
	v.e.mu.Unlock()
	if backoff != backoffStart {
		t.Errorf("backoff recorded %s, want %s", backoff, backoffStart)
	}
	// Running is no proof the new run wrote its line yet.
	for got := v.logs(id); got != "run\nrun\n"; got = v.logs(id) {
		if time.Now().After(deadline) {
			t.Fatalf("logs %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAttachStartStdin: a session attached before the start gets all of
// the run's output; its input reaches the process and its end closes the
// process's stdin (StdinOnce).
func TestAttachStartStdin(t *testing.T) {
	v := newEnv(t)
	id := v.create(CreateOptions{Config: &container.Config{Cmd: []string{"sh", "-c", "echo first; cat; echo done >&2"}, OpenStdin: true, StdinOnce: true, AttachStdin: true}})
	var out, errOut bytes.Buffer
	var mu sync.Mutex
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- v.e.Attach(context.Background(), id, AttachOptions{Stdin: true, Stdout: true, Stderr: true, Stream: true,
			Streams: func(tty bool) (io.Reader, io.Writer, io.Writer, io.Writer, error) {
				defer close(ready)
				return strings.NewReader("piped\n"), lockedWriter{&mu, &out}, lockedWriter{&mu, &errOut}, io.Discard, nil
			}})
	}()
	<-ready
	if err := v.e.Start(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("attach did not end")
	}
	mu.Lock()
	defer mu.Unlock()
	if out.String() != "first\npiped\n" || errOut.String() != "done\n" {
		t.Errorf("stdout %q stderr %q", out.String(), errOut.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestArchivePutOwners: PUT archive keeps the tar's owners, and
// copyUIDGID gives the container's user only when it has one (dockerd's
// tarCopyOptions; compose v5 copies secrets and configs with their uid and
// gid so).
func TestArchivePutOwners(t *testing.T) {
	v := newEnv(t)
	tarOf := func(name string, uid, gid int) *bytes.Buffer {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o400, Size: 2, Uid: uid, Gid: gid, Typeflag: tar.TypeReg})
		tw.Write([]byte("x\n"))
		tw.Close()
		return &b
	}
	stat := func(id, path string) string {
		var out string
		c, err := v.e.lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		err = v.e.inView(c, viewOptions{}, func(root string) error {
			fi, err := os.Lstat(filepath.Join(root, path))
			if err != nil {
				return err
			}
			st := fi.Sys().(*syscall.Stat_t)
			out = fmt.Sprintf("%o %d:%d", fi.Mode().Perm(), st.Uid, st.Gid)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	plain := v.create(CreateOptions{Name: "plain", Config: &container.Config{Cmd: []string{"true"}}})
	withUser := v.create(CreateOptions{Name: "user", Config: &container.Config{Cmd: []string{"true"}, User: "33:44"}})
	for _, c := range []struct {
		id, name   string
		copyUIDGID bool
		want       string
	}{
		{plain, "kept", false, "400 1000:1001"},
		{plain, "kept-copy", true, "400 1000:1001"},
		{withUser, "kept", false, "400 1000:1001"},
		{withUser, "user", true, "400 33:44"},
	} {
		if err := v.e.ArchivePut(t.Context(), c.id, "/", tarOf(c.name, 1000, 1001), ArchivePutOptions{CopyUIDGID: c.copyUIDGID}); err != nil {
			t.Fatal(err)
		}
		if got := stat(c.id, c.name); got != c.want {
			t.Errorf("%s copyUIDGID=%v: %s, want %s", c.name, c.copyUIDGID, got, c.want)
		}
	}
}

// TestFailedStartState: a start that fails leaves the container created
// with the failure as State.Error and exit code 128, as dockerd keeps it,
// until a start succeeds; a container that does not run shows no PID.
func TestFailedStartState(t *testing.T) {
	v := newEnv(t)
	target := v.create(CreateOptions{Name: "target", Config: &container.Config{Cmd: []string{"sleep", "600"}}})
	joiner := v.create(CreateOptions{Name: "joiner", Config: &container.Config{Cmd: []string{"sleep", "600"}},
		HostConfig: &container.HostConfig{NetworkMode: "container:target"}})
	if c, _ := v.e.Inspect(t.Context(), target); c.State.Pid != 0 {
		t.Errorf("a created container shows PID %d", c.State.Pid)
	}
	err := v.e.Start(t.Context(), joiner)
	if err == nil {
		t.Fatal("start joined to a container that does not run succeeded")
	}
	c, _ := v.e.Inspect(t.Context(), joiner)
	if c.State.Status != container.StateCreated || c.State.ExitCode != 128 || c.State.Error != err.Error() || c.State.Pid != 0 {
		t.Errorf("after a failed start: %+v, want created, 128, %q", c.State, err)
	}
	for _, id := range []string{target, joiner} {
		if err := v.e.Start(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	c, _ = v.e.Inspect(t.Context(), joiner)
	if c.State.Status != container.StateRunning || c.State.ExitCode != 0 || c.State.Error != "" || c.State.Pid == 0 {
		t.Errorf("after a start that succeeded: %+v", c.State)
	}
	for _, id := range []string{joiner, target} {
		if err := v.e.Remove(t.Context(), id, RemoveOptions{Force: true}); err != nil {
			t.Fatal(err)
		}
	}
}
