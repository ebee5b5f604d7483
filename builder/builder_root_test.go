package builder

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/logctx"
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

func buildShim(t testing.TB) string {
	t.Helper()
	return shim.Path(t)
}

// env is a builder on a real image store and runtime, with a registry on
// 127.0.0.1 holding busybox.
type env struct {
	t       testing.TB
	root    string
	state   string
	images  *imagestore.Store
	rt      *runtime.Manager
	b       *Builder
	busybox string
}

var (
	regOnce sync.Once
	regHost string
)

func newEnv(t testing.TB) *env {
	t.Helper()
	testutil.RequireRoot(t, "builds run containers on overlay snapshots")
	shim := buildShim(t)
	regOnce.Do(func() {
		srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
		regHost = strings.TrimPrefix(srv.URL, "http://")
	})
	busybox := testimage.Require(t, testimage.Busybox)
	ref := regHost + "/berth/busybox:1"
	if err := testimage.Push(t.Context(), busybox, ref); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	os.Chmod(root, 0o711)
	state, err := os.MkdirTemp("/tmp", "bb")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, root: root, state: state, busybox: ref}
	ctx := context.Background()
	if e.images, err = imagestore.Open(ctx, imagestore.Config{Root: filepath.Join(root, "images")}); err != nil {
		t.Fatal(err)
	}
	if e.rt, err = runtime.Open(ctx, runtime.Config{Root: filepath.Join(root, "runtime"), StateDir: state, ShimBinary: shim}); err != nil {
		t.Fatal(err)
	}
	e.open()
	t.Cleanup(func() {
		for _, c := range e.rt.ListContainers() {
			e.rt.RemoveContainer(context.Background(), c.ID)
		}
		e.rt.Close()
		e.images.Close()
		unmountBelow(root)
		unmountBelow(state)
		os.RemoveAll(state)
	})
	return e
}

func (e *env) open() {
	var err error
	// No bridge here (that is berthd's, tested end to end): RUN steps on
	// the host's network.
	e.b, err = New(Config{Root: filepath.Join(e.root, "builder"), StateDir: filepath.Join(e.state, "builder"), DefaultNetwork: NetworkHost}, e.images, e.rt, nil)
	if err != nil {
		e.t.Fatal(err)
	}
}

// contextTar makes a build context from name -> content ("name/" is a
// directory, "name@" content is a symlink target).
func contextTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[n])), ModTime: time.Unix(1700000000, 0)}
		switch {
		case strings.HasSuffix(n, "/"):
			h = &tar.Header{Name: n, Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(1700000000, 0)}
		case strings.HasSuffix(n, "@"):
			h = &tar.Header{Name: strings.TrimSuffix(n, "@"), Typeflag: tar.TypeSymlink, Linkname: files[n], ModTime: time.Unix(1700000000, 0)}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(files[n]))
		}
	}
	tw.Close()
	return buf.Bytes()
}

type buildOut struct {
	res    *Result
	events []Event
	output string
	cached int
}

func (e *env) build(files map[string]string, opts Options) (*buildOut, error) {
	e.t.Helper()
	out := &buildOut{}
	var mu sync.Mutex
	opts.Context = bytes.NewReader(contextTar(e.t, files))
	opts.Progress = func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		out.events = append(out.events, ev)
		switch ev.Kind {
		case EventOutput:
			out.output += ev.Text
		case EventCached:
			out.cached++
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if p := os.Getenv("BERTH_BUILD_LOG"); p != "" {
		// The builder's debug timings (as berthd --log-level debug logs
		// them) for a benchmark run.
		f, err := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			e.t.Fatal(err)
		}
		defer f.Close()
		ctx = logctx.With(ctx, slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}
	res, err := e.b.Build(ctx, opts)
	out.res = res
	return out, err
}

func (e *env) mustBuild(files map[string]string, opts Options) *buildOut {
	e.t.Helper()
	out, err := e.build(files, opts)
	if err != nil {
		e.t.Fatalf("build: %v\noutput:\n%s", err, out.output)
	}
	return out
}

// readFile reads a file of an image through a read-only view.
func (e *env) readFile(img *imagestore.Image, p string) (string, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	id := "test-" + newID()[:12]
	ms, err := e.images.ViewLayers(context.Background(), id, img.Layers)
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.images.RemoveSnapshot(context.Background(), id)
	if err := mountAll(ms, dir); err != nil {
		e.t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	b, err := os.ReadFile(filepath.Join(dir, p))
	return string(b), err
}

func (e *env) stat(img *imagestore.Image, p string) (os.FileInfo, error) {
	e.t.Helper()
	dir := e.t.TempDir()
	id := "test-" + newID()[:12]
	ms, err := e.images.ViewLayers(context.Background(), id, img.Layers)
	if err != nil {
		e.t.Fatal(err)
	}
	defer e.images.RemoveSnapshot(context.Background(), id)
	if err := mountAll(ms, dir); err != nil {
		e.t.Fatal(err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	return os.Lstat(filepath.Join(dir, p))
}

func config(t testing.TB, img *imagestore.Image) dockerspec.DockerOCIImage {
	t.Helper()
	var c dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.RawConfig, &c); err != nil {
		t.Fatal(err)
	}
	return c
}

// leftovers checks that a build left no container, snapshot, mount or
// temp dir behind.
func (e *env) leftovers() {
	e.t.Helper()
	if cs := e.rt.ListContainers(); len(cs) != 0 {
		e.t.Errorf("containers left: %d", len(cs))
	}
	ids, _ := e.images.Snapshots(context.Background())
	if len(ids) != 0 {
		e.t.Errorf("snapshots left: %v", ids)
	}
	for _, d := range []string{filepath.Join(e.root, "builder", "tmp"), filepath.Join(e.state, "builder")} {
		ents, _ := os.ReadDir(d)
		for _, x := range ents {
			e.t.Errorf("left in %s: %s", d, x.Name())
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		if strings.Contains(l, e.root) || strings.Contains(l, e.state+"/builder") {
			e.t.Errorf("mount left: %s", l)
		}
	}
}

func TestBuildBasics(t *testing.T) {
	e := newEnv(t)
	df := fmt.Sprintf(`# syntax=docker/dockerfile:1.7
FROM %s AS base
ARG GREETING=hello
ENV APP=/app
WORKDIR $APP
COPY hello.txt .
RUN echo "$GREETING from $(cat hello.txt)" > greeting && rm -r /var/tmp
LABEL org.example.kind=test
EXPOSE 8080/tcp 53/udp
USER www-data
CMD ["cat", "greeting"]
`, e.busybox)
	files := map[string]string{"Dockerfile": df, "hello.txt": "world"}
	out := e.mustBuild(files, Options{Tags: []string{"test/basics:1", "test/basics:latest"}, BuildArgs: map[string]*string{"GREETING": ptr("hi")}})
	img := out.res.Image
	if !slices.Equal(img.RepoTags, []string{"docker.io/test/basics:1", "docker.io/test/basics:latest"}) {
		t.Fatalf("tags %v", img.RepoTags)
	}
	if got, err := e.readFile(img, "app/greeting"); err != nil || got != "hi from world\n" {
		t.Fatalf("greeting %q %v", got, err)
	}
	if _, err := e.stat(img, "var/tmp"); !os.IsNotExist(err) {
		t.Fatalf("deleted file visible: %v", err)
	}
	c := config(t, img)
	if c.Config.WorkingDir != "/app" || c.Config.User != "www-data" || !slices.Equal(c.Config.Cmd, []string{"cat", "greeting"}) ||
		c.Config.Labels["org.example.kind"] != "test" || len(c.Config.ExposedPorts) != 2 {
		t.Fatalf("config %+v", c.Config)
	}
	if !slices.Contains(c.Config.Env, "APP=/app") || slices.ContainsFunc(c.Config.Env, func(s string) bool { return strings.HasPrefix(s, "GREETING") }) {
		t.Fatalf("env %v", c.Config.Env)
	}
	var created []string
	for _, h := range c.History {
		created = append(created, h.CreatedBy)
	}
	want := []string{"berth testimage", "ARG GREETING=hi", "ENV APP=/app", "WORKDIR /app", "COPY hello.txt . # buildkit",
		`RUN |1 GREETING=hi /bin/sh -c echo "$GREETING from $(cat hello.txt)" > greeting && rm -r /var/tmp # buildkit`,
		"LABEL org.example.kind=test", "EXPOSE [53/udp 8080/tcp]", "USER www-data", `CMD ["cat" "greeting"]`}
	if !slices.Equal(created, want) {
		t.Fatalf("history:\n%s\nwant:\n%s", strings.Join(created, "\n"), strings.Join(want, "\n"))
	}
	layers := 0
	for _, h := range c.History {
		if !h.EmptyLayer {
			layers++
		}
	}
	if layers != len(img.Layers) || len(img.Layers) != 4 {
		t.Fatalf("%d layers, %d non-empty history entries", len(img.Layers), layers)
	}
	if out.cached != 0 {
		t.Fatalf("first build had %d cached steps", out.cached)
	}
	e.leftovers()

	// Unchanged: every step from the cache, the same image.
	again := e.mustBuild(files, Options{Tags: []string{"test/basics:1"}, BuildArgs: map[string]*string{"GREETING": ptr("hi")}})
	if again.res.Image.ID != img.ID {
		t.Fatalf("rebuild gave %s, want %s", again.res.Image.ID, img.ID)
	}
	if again.output != "" {
		t.Fatalf("a cached build ran something: %q", again.output)
	}

	// A changed file rebuilds from its COPY on.
	files["hello.txt"] = "there"
	changed := e.mustBuild(files, Options{BuildArgs: map[string]*string{"GREETING": ptr("hi")}})
	if got, _ := e.readFile(changed.res.Image, "app/greeting"); got != "hi from there\n" {
		t.Fatalf("after change: %q", got)
	}
	if changed.res.Image.ID == img.ID || changed.res.Image.Layers[1].DiffID != img.Layers[1].DiffID || changed.res.Image.Layers[2].DiffID == img.Layers[2].DiffID {
		t.Fatal("the layers before the COPY should be reused, the image should differ")
	}
	e.leftovers()
}

func ptr(s string) *string { return &s }
