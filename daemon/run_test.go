package daemon

import (
	"context"
	"io"
	"log"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/testimage"
)

// testConfig returns a config whose every path is under a fresh temp dir.
func testConfig(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.Root = filepath.Join(dir, "root")
	cfg.State = filepath.Join(dir, "state")
	cfg.Images.RegistryConfigDir = filepath.Join(dir, "certs.d")
	// Keep the machine's ~/.docker/config.json out of the test.
	cfg.Images.DockerConfig = filepath.Join(dir, "docker-config.json")
	// NRI on a socket of the test's own, never the node's default.
	cfg.NRI.SocketPath = filepath.Join(dir, "nri.sock")
	cfg.NRI.PluginPath = filepath.Join(dir, "nri-plugins")
	cfg.NRI.PluginConfigPath = filepath.Join(dir, "nri-conf.d")
	return cfg
}

// start runs the daemon until the test ends and waits for its CRI socket.
// The returned stop cancels it and returns Run's error.
func start(t *testing.T, cfg Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, cfg) }()
	var stopped bool
	var runErr error
	stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(2 * shutdownGrace):
				t.Fatal("Run did not return after its context was cancelled")
			}
		}
		return runErr
	}
	t.Cleanup(func() { stop() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		if answers(cfg.CRISocket()) && answers(cfg.DockerSocket()) {
			return stop
		}
		select {
		case err := <-errc:
			stopped, runErr = true, err
			t.Fatalf("Run returned before serving: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("CRI socket never answered")
		}
	}
}

func answers(sock string) bool {
	c, err := net.Dial("unix", sock)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func criClients(t *testing.T, sock string) (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

func dockerGet(t *testing.T, sock, path string) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := c.Get("http://berthd" + path)
	if err != nil {
		t.Fatalf("GET %s on %s: %v", path, sock, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRunServesCRIAndDockerAPI(t *testing.T) {
	ctx := t.Context()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	busybox := testimage.Require(t, testimage.Busybox)
	nonroot, err := testimage.NonRoot()
	if err != nil {
		t.Fatal(err)
	}
	if err := testimage.Push(ctx, busybox, host+"/berth/busybox:1"); err != nil {
		t.Fatal(err)
	}
	if err := testimage.Push(ctx, busybox, host+"/berth/busybox:2"); err != nil {
		t.Fatal(err)
	}
	if err := testimage.Push(ctx, nonroot, host+"/berth/nonroot:1"); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig(t)
	stop := start(t, cfg)
	rt, images := criClients(t, cfg.CRISocket())

	for path, want := range map[string]os.FileMode{cfg.Root: 0o711, cfg.State: 0o711, cfg.CRISocket(): 0o660, cfg.DockerSocket(): 0o660} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("mode of %s = %v, want %v", path, got, want)
		}
	}

	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != Version {
		t.Fatalf("Version = %v, %v", v, err)
	}
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(st.Info["config"], cfg.Root) {
		t.Errorf("verbose status config lacks the root: %q", st.Info["config"])
	}
	if code, body := dockerGet(t, cfg.DockerSocket(), "/_ping"); code != http.StatusOK || body != "OK" {
		t.Errorf("/_ping = %d %q, want 200 OK", code, body)
	}
	// /info reports the runtime's cgroup driver (cgroupfs, the one this
	// host runs with; the CRI's RuntimeConfig says the same).
	if code, body := dockerGet(t, cfg.DockerSocket(), "/info"); code != http.StatusOK || !strings.Contains(body, `"CgroupDriver":"cgroupfs"`) || !strings.Contains(body, `"LoggingDriver":"json-file"`) {
		t.Errorf("/info = %d %s, want the cgroupfs driver and the default json-file log driver", code, body)
	}

	pulled, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: host + "/berth/busybox:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: host + "/berth/busybox:2"}}); err != nil {
		t.Fatal(err)
	}
	nr, err := images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: host + "/berth/nonroot:1"}})
	if err != nil {
		t.Fatal(err)
	}

	list, err := images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*runtimeapi.Image{}
	for _, img := range list.Images {
		byID[img.Id] = img
	}
	bb := byID[pulled.ImageRef]
	if len(list.Images) != 2 || bb == nil || byID[nr.ImageRef] == nil {
		t.Fatalf("list = %v; want busybox %s and nonroot %s", list.Images, pulled.ImageRef, nr.ImageRef)
	}
	slices.Sort(bb.RepoTags)
	if want := []string{host + "/berth/busybox:1", host + "/berth/busybox:2"}; !slices.Equal(bb.RepoTags, want) || bb.Size == 0 || len(bb.RepoDigests) == 0 {
		t.Errorf("busybox = %v; want tags %v, a size and a repo digest", bb, want)
	}
	if uid := byID[nr.ImageRef].GetUid(); uid == nil || uid.Value != testimage.NonRootUID {
		t.Errorf("nonroot uid = %v, want %d", uid, testimage.NonRootUID)
	}

	filtered, err := images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: host + "/berth/nonroot:1"}}})
	if err != nil || len(filtered.Images) != 1 || filtered.Images[0].Id != nr.ImageRef {
		t.Errorf("list filtered by nonroot = %v, %v", filtered, err)
	}

	is, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: host + "/berth/nonroot:1"}, Verbose: true})
	if err != nil || is.Image.GetId() != nr.ImageRef || !strings.Contains(is.Info["info"], `"User":"1000:1000"`) {
		t.Errorf("verbose status of nonroot = %v, %v", is, err)
	}

	// One tag of two names the whole image: it goes with both tags (CRI
	// semantics); removing it again, by ID, still succeeds.
	for _, name := range []string{host + "/berth/busybox:1", pulled.ImageRef} {
		if _, err := images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: name}}); err != nil {
			t.Fatalf("remove %s: %v", name, err)
		}
	}
	is, err = images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: pulled.ImageRef}})
	if err != nil || is.Image != nil {
		t.Errorf("status of removed image = %v, %v; want an empty response", is, err)
	}

	fs, err := images.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs.ImageFilesystems) != 1 || fs.ImageFilesystems[0].UsedBytes.GetValue() == 0 || fs.ImageFilesystems[0].InodesUsed.GetValue() == 0 {
		t.Errorf("image fs info = %v; want usage of the nonroot image", fs)
	}

	if err := stop(); err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
	for _, sock := range []string{cfg.CRISocket(), cfg.DockerSocket()} {
		if _, err := os.Lstat(sock); !os.IsNotExist(err) {
			t.Errorf("socket %s left after shutdown (%v)", sock, err)
		}
	}
}

func TestSecondDaemonOnSameRootFails(t *testing.T) {
	cfg := testConfig(t)
	start(t, cfg)

	other := testConfig(t)
	other.Root = cfg.Root
	err := Run(t.Context(), other)
	if err == nil || !strings.Contains(err.Error(), "another berthd is using root "+cfg.Root) {
		t.Fatalf("second Run on the same root = %v; want the lock error", err)
	}
	// A daemon on another root and state runs side by side.
	start(t, testConfig(t))
}

func TestSocketInUseIsRefusedAndStaleOneReplaced(t *testing.T) {
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.State, 0o711); err != nil {
		t.Fatal(err)
	}
	live, err := net.Listen("unix", cfg.CRISocket())
	if err != nil {
		t.Fatal(err)
	}
	err = Run(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "another process is serving on it") {
		t.Fatalf("Run with a live CRI socket = %v; want a refusal", err)
	}
	// Leave the socket file behind as a killed daemon would.
	live.(*net.UnixListener).SetUnlinkOnClose(false)
	live.Close()
	start(t, cfg)
}

func TestConfig(t *testing.T) {
	cfg := DefaultConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
	err := ParseConfig([]byte(`
root = "/srv/berth"
state = "/run/b2"
log_level = "debug"
[images]
registry_config_dir = "/etc/containerd/certs.d"
stall_timeout = "30s"
max_concurrent_downloads = 5
[runtime]
strict_resources = true
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/berth" || cfg.CRISocket() != "/run/b2/berth.sock" || cfg.DockerSocket() != "/run/b2/docker.sock" ||
		cfg.Images.StallTimeout != 30*time.Second || cfg.Images.MaxConcurrentDownloads != 5 || cfg.Images.RegistryConfigDir != "/etc/containerd/certs.d" ||
		!cfg.Runtime.StrictResources || !cfg.runtimeConfig("/x").StrictResources {
		t.Errorf("parsed config = %+v", cfg)
	}
	// NRI: on by default at NRI's socket; the file moves it, sets the
	// timeouts, or turns it off.
	if n := DefaultConfig().nriConfig(); n == nil || n.SocketPath != "/var/run/nri/nri.sock" || n.RequestTimeout != 2*time.Second || n.RegistrationTimeout != 5*time.Second {
		t.Errorf("default NRI config = %+v", n)
	}
	nc := DefaultConfig()
	if err := ParseConfig([]byte("[nri]\nsocket_path = \"/run/b2/nri.sock\"\nplugin_request_timeout = \"5s\"\n"), &nc); err != nil {
		t.Fatal(err)
	}
	if n := nc.nriConfig(); n == nil || n.SocketPath != "/run/b2/nri.sock" || n.RequestTimeout != 5*time.Second || nc.Validate() != nil {
		t.Errorf("[nri] parsed = %+v", n)
	}
	if err := ParseConfig([]byte("[nri]\ndisable = true\nsocket_path = \"relative\"\n"), &nc); err != nil || nc.nriConfig() != nil || nc.Validate() != nil {
		t.Errorf("[nri] disable = true: config %+v, validate %v; want NRI off and its paths not checked", nc.nriConfig(), nc.Validate())
	}
	if err := ParseConfig([]byte(`roots = "/x"`), &cfg); err == nil || !strings.Contains(err.Error(), "roots") {
		t.Errorf("unknown key: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"relative root":  func(c *Config) { c.Root = "var/lib/berth" },
		"log level":      func(c *Config) { c.LogLevel = "loud" },
		"same sockets":   func(c *Config) { c.Listen = "unix://" + c.DockerSocket() },
		"zero stall":     func(c *Config) { c.Images.StallTimeout = 0 },
		"no downloaders": func(c *Config) { c.Images.MaxConcurrentDownloads = 0 },
		"log driver":     func(c *Config) { c.Logging.Driver = "syslog" },
		"log opt":        func(c *Config) { c.Logging.Opts["max-sise"] = "1m" },
		"log size":       func(c *Config) { c.Logging.Opts["max-size"] = "big" },
		"nri socket":     func(c *Config) { c.NRI.SocketPath = "nri.sock" },
		"nri is cri":     func(c *Config) { c.NRI.SocketPath = c.CRISocket() },
		"nri long path":  func(c *Config) { c.NRI.SocketPath = "/" + strings.Repeat("n", 110) },
		"nri timeout":    func(c *Config) { c.NRI.PluginRequestTimeout = 0 },
		"nri plugins":    func(c *Config) { c.NRI.PluginPath = "plugins" },
	} {
		c := DefaultConfig()
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}

// TestLoggingConfig: the [logging] section is daemon.json's log-driver
// and log-opts: Berth's default rotates; opts in the file replace the
// default's; a bad option fails as it would at docker run.
func TestLoggingConfig(t *testing.T) {
	cfg := DefaultConfig()
	if cfg.Logging.Driver != "json-file" || cfg.Logging.Opts["max-size"] != "10m" || cfg.Logging.Opts["max-file"] != "5" {
		t.Fatalf("default logging %+v", cfg.Logging)
	}
	for _, tt := range []struct {
		file   string
		driver string
		opts   map[string]string
	}{
		{"[logging]\ndriver = \"local\"\n", "local", nil},
		{"[logging]\ndriver = \"json-file\"\n", "json-file", map[string]string{"max-size": "10m", "max-file": "5"}},
		{"[logging.opts]\nmax-size = \"1m\"\n", "json-file", map[string]string{"max-size": "1m"}},
		{"[logging]\ndriver = \"gelf\"\nopts = { gelf-address = \"udp://10.0.0.1:12201\", tag = \"{{.Name}}\" }\n", "gelf", map[string]string{"gelf-address": "udp://10.0.0.1:12201", "tag": "{{.Name}}"}},
	} {
		c := DefaultConfig()
		if err := ParseConfig([]byte(tt.file), &c); err != nil {
			t.Fatalf("%q: %v", tt.file, err)
		}
		if c.Logging.Driver != tt.driver || !maps.Equal(c.Logging.Opts, tt.opts) {
			t.Errorf("%q: %+v, want %s %v", tt.file, c.Logging, tt.driver, tt.opts)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%q: %v", tt.file, err)
		}
	}
	c := DefaultConfig()
	if err := ParseConfig([]byte("[logging]\ndriver = \"gelf\"\n"), &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "gelf-address is a required parameter") {
		t.Errorf("gelf without address: %v", err)
	}
}

// TestStatusReportsMissingBinaries: CRI Status says the runtime is not ready,
// and why, while berth-runc is missing next to the configured shim, and
// ready once it is installed, without a restart.
func TestStatusReportsMissingBinaries(t *testing.T) {
	cfg := testConfig(t)
	bin := t.TempDir()
	cfg.Runtime.ShimBinary = filepath.Join(bin, "berth-shim")
	if err := os.WriteFile(cfg.Runtime.ShimBinary, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// And /info reports the configured default log driver, not a literal.
	cfg.Logging.Driver, cfg.Logging.Opts = "local", nil
	start(t, cfg)
	if code, body := dockerGet(t, cfg.DockerSocket(), "/info"); code != http.StatusOK || !strings.Contains(body, `"LoggingDriver":"local"`) {
		t.Errorf("/info = %d %s, want the configured log driver local", code, body)
	}
	rt, _ := criClients(t, cfg.CRISocket())
	runtimeReady := func() *runtimeapi.RuntimeCondition {
		t.Helper()
		st, err := rt.Status(t.Context(), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range st.GetStatus().GetConditions() {
			if c.Type == runtimeapi.RuntimeReady {
				return c
			}
		}
		t.Fatalf("no %s condition in %v", runtimeapi.RuntimeReady, st)
		return nil
	}
	if c := runtimeReady(); c.Status || c.Reason == "" || !strings.Contains(c.Message, filepath.Join(bin, "berth-runc")) {
		t.Errorf("without berth-runc: %v; want not ready, naming it", c)
	}
	if err := os.WriteFile(filepath.Join(bin, "berth-runc"), []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if c := runtimeReady(); !c.Status || c.Reason != "" || c.Message != "" {
		t.Errorf("with berth-runc: %v; want ready", c)
	}
}

// TestStartSweepsOrphanSnapshots: at start-up berthd removes a container
// snapshot that no front holds (berthd died inside CreateContainer) and
// leaves a snapshot whose name no front knows.
func TestStartSweepsOrphanSnapshots(t *testing.T) {
	ctx := t.Context()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/berth/busybox:1"
	if err := testimage.Push(ctx, testimage.Require(t, testimage.Busybox), ref); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		t.Fatal(err)
	}
	orphan := strings.Repeat("0f", 32)
	snapshots := func(prepare ...string) []string {
		t.Helper()
		store, err := imagestore.Open(ctx, cfg.imageStore())
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		if len(prepare) > 0 {
			img, err := store.Pull(ctx, ref, imagestore.PullOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, id := range prepare {
				if _, err := store.Prepare(ctx, id, img.ID.String()); err != nil {
					t.Fatal(err)
				}
			}
		}
		names, err := store.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(names)
		return names
	}
	if got := snapshots(orphan, orphan+"-iv0", "kept-by-someone"); len(got) != 3 {
		t.Fatalf("prepared %q", got)
	}
	stop := start(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := snapshots(), []string{"kept-by-someone"}; !slices.Equal(got, want) {
		t.Errorf("snapshots after start-up = %q, want %q", got, want)
	}
}
