// Package e2e drives a real berthd, built from this tree, over its sockets:
// the CRI gRPC API, the Docker-compatible API, and the crictl, berth and
// docker command-line tools. Images come from an in-process registry on
// 127.0.0.1 that the tests fill with images built from the host's busybox.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/moby/moby/client"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/testutil"
)

// repoRoot is the module root, two levels up from this package.
func repoRoot(t testing.TB) string {
	t.Helper()
	dir, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func requireRoot(t testing.TB) {
	t.Helper()
	testutil.RequireRoot(t, "e2e tests run berthd (unpacking ownership, overlay mounts)")
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	// builtBinDir is set when binDir is a temp dir of this run, removed
	// by TestMain.
	builtBinDir bool
)

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBinDir {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// binaries builds berthd and berth from this tree once per test run, or
// uses BERTH_BIN_DIR when the Makefile already built them.
func binaries(t testing.TB) (berthd, berth string) {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv("BERTH_BIN_DIR"); dir != "" {
			binDir = dir
			return
		}
		binDir, buildErr = os.MkdirTemp("", "berth-e2e-bin-")
		if buildErr != nil {
			return
		}
		builtBinDir = true
		buildErr = buildBinaries(repoRoot(t), binDir)
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "berthd"), filepath.Join(binDir, "berth")
}

// buildBinaries builds berthd and berth into dir as the Makefile does,
// with compose's version linked into berth (`berth compose version`).
func buildBinaries(root, dir string) error {
	goCmd := func(args ...string) (string, error) {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	compose, err := goCmd("list", "-m", "-f", "{{.Version}}", "github.com/docker/compose/v5")
	if err != nil {
		return err
	}
	if _, err := goCmd("build", "-o", dir+"/", "./cmd/berthd"); err != nil {
		return err
	}
	_, err = goCmd("build", "-ldflags", "-X github.com/docker/compose/v5/internal.Version="+compose, "-o", dir+"/", "./cmd/berth")
	return err
}

// tool finds an external command-line tool: the environment variable, the
// project's pinned tools dir, then PATH. Under CI a missing tool fails the
// test, since `make test` installs it.
func tool(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	if p := filepath.Join(repoRoot(t), "_output", "tools", name); fileExists(p) {
		return p
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	testutil.Missing(t, "%s not found (set %s or run hack/install-deps.sh)", name, env)
	return ""
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// testRegistry is an in-process registry on 127.0.0.1 that can be slowed
// down (to kill berthd in the middle of a pull) and counts blob bytes served.
type testRegistry struct {
	srv       *httptest.Server
	Host      string
	slow      atomic.Bool
	blobBytes atomic.Int64
	// basicAuth, when set ("user:password"), is required of every request.
	basicAuth string
}

func newRegistry(t testing.TB) *testRegistry { return newAuthRegistry(t, "") }

// newAuthRegistry is a registry that wants HTTP basic auth with
// userPassword ("user:password"); empty means none.
func newAuthRegistry(t testing.TB, userPassword string) *testRegistry {
	t.Helper()
	r := &testRegistry{basicAuth: userPassword}
	inner := registry.New(registry.Logger(nopLogger()))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.basicAuth != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u+":"+p != r.basicAuth {
				w.Header().Set("WWW-Authenticate", `Basic realm="berth-e2e"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			w = &countingWriter{ResponseWriter: w, reg: r}
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

type countingWriter struct {
	http.ResponseWriter
	reg *testRegistry
}

// Write sends blob bytes in small pieces with pauses while the registry is
// slow, so a pull of a big image takes seconds instead of milliseconds.
func (c *countingWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := len(p)
		if c.reg.slow.Load() && n > 64<<10 {
			n = 64 << 10
		}
		m, err := c.ResponseWriter.Write(p[:n])
		written += m
		c.reg.blobBytes.Add(int64(m))
		if err != nil {
			return written, err
		}
		p = p[n:]
		if c.reg.slow.Load() {
			if f, ok := c.ResponseWriter.(http.Flusher); ok {
				f.Flush()
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return written, nil
}

func (c *countingWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// daemon is one berthd process on its own root and state directories.
type daemon struct {
	t          testing.TB
	bin        string
	Root       string
	State      string
	HostsDir   string
	CRISocket  string
	DockerSock string
	// NRISocket is where NRI plugins connect.
	NRISocket string
	logPath   string
	cmd       *exec.Cmd
	exited    chan struct{}
	// extraArgs are appended to berthd's command line at every start.
	extraArgs []string
	// Networks is the address space of its standalone networks.
	Networks engineNetworks
}

// startDaemon starts berthd with a hosts directory that maps the given
// upstream names (e.g. "docker.io") to the test registry.
func startDaemon(t testing.TB, reg *testRegistry, mirrored ...string) *daemon {
	t.Helper()
	return startDaemonWith(t, reg, daemonOptions{Mirrored: mirrored})
}

// daemonOptions are the optional parts of a test daemon.
type daemonOptions struct {
	// Mirrored upstream registry names map to the test registry.
	Mirrored []string
	// Network, when set, gives berthd a CNI config and plugins (pods).
	Network *testNetwork
	// Shim is the berth-shim binary; empty lets berthd find its own (next
	// to berthd, which is how BERTH_BIN_DIR=bin works).
	Shim string
}

func startDaemonWith(t testing.TB, reg *testRegistry, opts daemonOptions) *daemon {
	t.Helper()
	requireRoot(t)
	berthd, _ := binaries(t)
	mirrored := opts.Mirrored
	// Short paths: unix socket paths are limited to 108 bytes.
	base, err := os.MkdirTemp("", "be2e-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{
		t:        t,
		bin:      berthd,
		Root:     filepath.Join(base, "root"),
		State:    filepath.Join(base, "run"),
		HostsDir: filepath.Join(base, "certs.d"),
		logPath:  filepath.Join(base, "berthd.log"),
	}
	if n := opts.Network; n != nil {
		d.extraArgs = append(d.extraArgs, "--cni-conf-dir", n.ConfDir, "--cni-bin-dir", n.BinDir)
	}
	if opts.Shim != "" {
		d.extraArgs = append(d.extraArgs, "--shim-binary", opts.Shim)
	}
	// An explicit config file: the defaults plus flags must do, but for
	// the standalone networks' bridge and pool, which are this daemon's.
	d.Networks = newEngineNetworks()
	conf := d.Networks.config()
	if dir := builtCNIPlugins(t); dir != "" {
		// Standalone containers need the plugins too; --cni-bin-dir (pods'
		// networks) overrides this.
		conf = fmt.Sprintf("[cni]\nbin_dirs = [%q]\n", dir) + conf
	}
	writeFile(t, filepath.Join(base, "config.toml"), conf)
	d.CRISocket = filepath.Join(d.State, "berth.sock")
	d.DockerSock = filepath.Join(d.State, "docker.sock")
	// NRI on a socket of this daemon's own, never the node's default.
	d.NRISocket = filepath.Join(base, "nri.sock")
	d.extraArgs = append(d.extraArgs, "--nri-socket", d.NRISocket)
	hosts := append([]string{reg.Host}, mirrored...)
	for _, h := range hosts {
		writeFile(t, filepath.Join(d.HostsDir, h, "hosts.toml"), fmt.Sprintf("server = \"http://%s\"\n", reg.Host))
	}
	t.Cleanup(func() {
		d.Stop()
		d.Networks.cleanup(t)
		if t.Failed() {
			if b, err := os.ReadFile(d.logPath); err == nil {
				t.Logf("berthd log (%s):\n%s", d.logPath, tail(b, 60))
			}
		}
		unmountAll(base)
		os.RemoveAll(base)
	})
	d.Start()
	return d
}

func (d *daemon) Start() {
	d.t.Helper()
	logf, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command(d.bin, "--root", d.Root, "--state", d.State,
		"--registry-config-dir", d.HostsDir, "--config", filepath.Join(filepath.Dir(d.Root), "config.toml"),
		"--log-level", "debug")
	d.cmd.Args = append(d.cmd.Args, d.extraArgs...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Its own process group, so a test's kill -9 hits only this daemon.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(d.cmd, d.exited)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// berthd listens before its start-up sweeps and serves after
		// them: a connect succeeds early, an answer means it is up.
		if dialable(d.CRISocket) && pings(d.DockerSock) {
			return
		}
		select {
		case <-d.exited:
			b, _ := os.ReadFile(d.logPath)
			d.t.Fatalf("berthd exited during start-up:\n%s", tail(b, 40))
		default:
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("berthd sockets did not appear within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill9 kills berthd with SIGKILL and waits for it to be gone.
func (d *daemon) Kill9() {
	d.t.Helper()
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

// Stop ends berthd with SIGTERM (SIGKILL after 10 s).
func (d *daemon) Stop() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(10 * time.Second):
		d.cmd.Process.Signal(syscall.SIGKILL)
		<-d.exited
	}
	d.cmd = nil
}

// CRI returns clients of berthd's CRI socket.
func (d *daemon) CRI() (runtimeapi.RuntimeServiceClient, runtimeapi.ImageServiceClient) {
	d.t.Helper()
	conn, err := grpc.NewClient("unix://"+d.CRISocket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
}

// Docker returns a moby client of berthd's Docker-compatible socket.
func (d *daemon) Docker() *client.Client {
	d.t.Helper()
	c, err := client.New(client.WithHost("unix://"+d.DockerSock), client.WithAPIVersionNegotiation())
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { c.Close() })
	return c
}

// run runs a command-line tool and returns its stdout; a non-zero exit
// fails the test with both streams.
func run(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	out, errOut, err := runErr(env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\nstdout:\n%s\nstderr:\n%s", filepath.Base(name), strings.Join(args, " "), err, out, errOut)
	}
	return out
}

func runErr(env []string, name string, args ...string) (stdout, stderr string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func dialable(sock string) bool {
	c, err := net.DialTimeout("unix", sock, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// pings says whether the Docker API on sock answers /_ping: berthd
// serves its sockets only once its start-up (reconciliation, the sweeps
// of what a killed berthd left) is done.
func pings(sock string) bool {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	defer c.CloseIdleConnections()
	resp, err := c.Get("http://berthd/_ping")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func tail(b []byte, lines int) string {
	s := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// unmountAll unmounts anything a daemon left mounted under dir, deepest
// first, so that a failed test does not leave mounts on the machine.
func unmountAll(dir string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mounts []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
}

func nopLogger() *log.Logger { return log.New(io.Discard, "", 0) }
