package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/dockerapi"
	"github.com/berth-dev/berth/dockerapi/dockerapitest"
)

// TestEndpoint: berth talks to berthd ($BERTH_HOST here) whatever points
// docker elsewhere, and to another daemon only when its command line says
// so (-H, --context).
func TestEndpoint(t *testing.T) {
	h := newHarness(t)
	// "dockerd": another daemon, told apart by its version.
	other := filepath.Join(t.TempDir(), "dockerd.sock")
	h.serve(other, dockerapi.NewHandler(dockerapitest.New(), dockerapi.Options{Version: "0.0.0-dockerd"}))
	h.ok("context", "create", "dockerd", "--docker", "host=unix://"+other)

	serverVersion := func(env []string, args ...string) string {
		t.Helper()
		r := h.runIn("", env, append(args, "version", "--format", "{{.Server.Version}}")...)
		if r.code != 0 {
			t.Fatalf("berth %v with %v: exit %d, %s", args, env, r.code, r.stderr)
		}
		return strings.TrimSpace(r.stdout)
	}
	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"BERTH_HOST", nil, nil, "9.9.9"},
		{"DOCKER_HOST is docker's", []string{"DOCKER_HOST=unix://" + other}, nil, "9.9.9"},
		{"DOCKER_CONTEXT is docker's", []string{"DOCKER_CONTEXT=dockerd"}, nil, "9.9.9"},
		{"docker's TLS settings go with DOCKER_HOST", []string{"DOCKER_TLS_VERIFY=1", "DOCKER_TLS=1", "DOCKER_CERT_PATH=/nonexistent"}, nil, "9.9.9"},
		{"-H", []string{"DOCKER_HOST=unix:///nonexistent.sock"}, []string{"-H", "unix://" + other}, "0.0.0-dockerd"},
		{"--context", nil, []string{"--context", "dockerd"}, "0.0.0-dockerd"},
	} {
		if got := serverVersion(tc.env, tc.args...); got != tc.want {
			t.Errorf("%s: server %q, want %q", tc.name, got, tc.want)
		}
	}

	// The current context of config.json is docker's too.
	writeFile(t, filepath.Join(h.configDir, "config.json"), `{"currentContext": "dockerd"}`)
	if out := h.ok("context", "ls", "--format", "{{.Name}} {{.Current}}"); !strings.Contains(out, "dockerd false") {
		t.Errorf("context ls = %q", out)
	}
	if got := serverVersion(nil); got != "9.9.9" {
		t.Errorf("with currentContext dockerd in config.json: server %q", got)
	}

	r := h.run("", "-H", "unix://"+other, "--context", "dockerd", "version")
	if r.code != 1 || r.stderr != "conflicting options: cannot specify both --host and --context\n" {
		t.Errorf("-H and --context: exit %d, %q", r.code, r.stderr)
	}
	// Without BERTH_HOST: berthd's socket (asked of the context store, so
	// that a berthd running on this machine does not matter).
	r = h.runIn("", []string{"BERTH_HOST=", "DOCKER_HOST=unix://" + other}, "context", "inspect", "default", "--format", "{{.Endpoints.docker.Host}}")
	if r.code != 0 || r.stdout != defaultHost+"\n" {
		t.Errorf("default endpoint: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	// berth does not warn that DOCKER_HOST overrides contexts: for berth it
	// does not.
	r = h.runIn("", []string{"DOCKER_HOST=unix://" + other}, "context", "ls")
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "default *   ") || !strings.Contains(r.stdout, "unix://"+h.sock) {
		t.Errorf("context ls: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A daemon that is not there: docker's one-line error.
	r = h.fails(1, "-H", "unix:///nonexistent/berth.sock", "images")
	if !strings.HasPrefix(r.stderr, "failed to connect to the docker API at unix:///nonexistent/berth.sock") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("no daemon: %q", r.stderr)
	}
}

func TestContextUse(t *testing.T) {
	h := newHarness(t)
	h.ok("context", "create", "remote", "--docker", "host=ssh://berth@example.com")
	r := h.fails(1, "context", "use", "remote")
	if !strings.Contains(r.stderr, `berth --context remote`) || !strings.Contains(r.stderr, "BERTH_HOST") {
		t.Errorf("context use: %q", r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(h.configDir, "config.json")); err == nil && strings.Contains(string(b), "currentContext") {
		t.Errorf("context use changed docker's current context: %s", b)
	}
	if r := h.fails(1, "context", "use"); !strings.HasPrefix(r.stderr, "berth: 'berth context use' requires 1 argument\n\nUsage:  berth context use CONTEXT\n") {
		t.Errorf("context use without a name: %q", r.stderr)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
