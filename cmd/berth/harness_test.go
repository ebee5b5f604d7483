package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/dockerapi"
	"github.com/berth-dev/berth/dockerapi/dockerapitest"
)

// The tests run berth as a user does, one process per command line: the
// test binary re-executes itself as berth (docker/cli keeps per-process
// state: the config dir, the TLS environment read at start-up).
const envRunAsBerth = "BERTH_TEST_RUN_AS_BERTH"

func TestMain(m *testing.M) {
	if os.Getenv(envRunAsBerth) == "1" {
		os.Exit(run(context.Background(), os.Args[1:]))
	}
	os.Exit(m.Run())
}

// harness runs berth command lines against the real dockerapi handler on
// a unix socket, as berthd serves it, over an in-memory image store; each
// test has its own docker config dir and home.
type harness struct {
	t         *testing.T
	store     *dockerapitest.Store
	sock      string
	configDir string
	home      string
	// env is added to every command's environment (KEY=value).
	env []string
}

func newHarness(t *testing.T) *harness {
	store := dockerapitest.New()
	dir := t.TempDir()
	h := &harness{t: t, store: store, sock: filepath.Join(dir, "docker.sock"), home: filepath.Join(dir, "home")}
	h.configDir = filepath.Join(h.home, ".docker")
	h.serve(h.sock, dockerapi.NewHandler(store, dockerapi.Options{Root: "/var/lib/berth-test", Version: "9.9.9"}))
	return h
}

// serve serves handler on a new unix socket at path until the test ends.
func (h *harness) serve(path string, handler http.Handler) {
	l, err := net.Listen("unix", path)
	if err != nil {
		h.t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	h.t.Cleanup(func() { srv.Close() })
}

type result struct {
	stdout, stderr string
	code           int
}

// runIn runs berth with stdin and the environment env (on top of the
// harness's: BERTH_HOST on the socket, HOME, DOCKER_CONFIG).
func (h *harness) runIn(stdin string, env []string, args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append([]string{envRunAsBerth + "=1", "PATH=/usr/bin:/bin", "HOME=" + h.home,
		"BERTH_HOST=unix://" + h.sock, "DOCKER_CONFIG=" + h.configDir}, h.env...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		h.t.Fatalf("berth %s: %v", strings.Join(args, " "), err)
	}
	return result{out.String(), errOut.String(), code}
}

func (h *harness) run(stdin string, args ...string) result {
	h.t.Helper()
	return h.runIn(stdin, nil, args...)
}

// ok runs berth and fails the test unless it exits 0; it returns stdout.
func (h *harness) ok(args ...string) string {
	h.t.Helper()
	r := h.run("", args...)
	if r.code != 0 {
		h.t.Fatalf("berth %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// fails runs berth and fails the test unless it exits with code.
func (h *harness) fails(code int, args ...string) result {
	h.t.Helper()
	r := h.run("", args...)
	if r.code != code {
		h.t.Fatalf("berth %s: exit %d, want %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, code, r.stdout, r.stderr)
	}
	return r
}
