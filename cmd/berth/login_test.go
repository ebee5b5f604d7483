package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
)

// configAuths reads the auths of the harness's config.json.
func (h *harness) configAuths() map[string]string {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.configDir, "config.json"))
	if err != nil {
		h.t.Fatal(err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		h.t.Fatalf("config.json: %v\n%s", err, b)
	}
	out := map[string]string{}
	for k, v := range cfg.Auths {
		out[k] = v.Auth
	}
	return out
}

func TestLoginLogout(t *testing.T) {
	h := newHarness(t)
	h.store.Logins["alice"] = "s3cret"
	h.store.Remote["127.0.0.1:5000/private/app:latest"] = dockerapitest.Image("p")

	r := h.run("wrong\n", "login", "-u", "alice", "--password-stdin", "127.0.0.1:5000")
	if r.code != 1 || r.stderr != "Error response from daemon: login 127.0.0.1:5000: unauthorized: bad credentials\n" {
		t.Errorf("login with a wrong password: exit %d %q", r.code, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(h.configDir, "config.json")); err == nil {
		t.Error("a failed login wrote config.json")
	}
	// A server given as a URL is stored under its host, as docker does.
	r = h.run("s3cret\n", "login", "-u", "alice", "--password-stdin", "https://127.0.0.1:5000/v2/")
	if r.code != 0 || r.stdout != "Login Succeeded\n" || !strings.Contains(r.stderr, "WARNING! Your credentials are stored unencrypted") {
		t.Fatalf("login: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(filepath.Join(h.configDir, "config.json")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v %v", fi, err)
	}
	if auths := h.configAuths(); len(auths) != 1 || auths["127.0.0.1:5000"] != base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) {
		t.Fatalf("auths after login = %v", auths)
	}

	// Pulls and pushes to that registry now carry the credentials.
	h.ok("pull", "-q", "127.0.0.1:5000/private/app")
	if a := h.store.LastAuth; a == nil || a.Username != "alice" || a.Password != "s3cret" {
		t.Errorf("auth sent with pull = %+v", a)
	}
	h.store.LastAuth = nil
	h.ok("push", "-q", "127.0.0.1:5000/private/app")
	if a := h.store.LastAuth; a == nil || a.Username != "alice" {
		t.Errorf("auth sent with push = %+v", a)
	}

	if out := h.ok("logout", "127.0.0.1:5000"); out != "Removing login credentials for 127.0.0.1:5000\n" {
		t.Errorf("logout = %q", out)
	}
	if auths := h.configAuths(); len(auths) != 0 {
		t.Errorf("auths after logout = %v", auths)
	}
	// docker 29 says the same when there was nothing to remove.
	if out := h.ok("logout", "127.0.0.1:5000"); out != "Removing login credentials for 127.0.0.1:5000\n" {
		t.Errorf("second logout = %q", out)
	}
	h.ok("pull", "-q", "127.0.0.1:5000/private/app")
	if h.store.LastAuth != nil {
		t.Errorf("auth sent after logout = %+v", h.store.LastAuth)
	}
}

// TestDockerHubCredentials: a login without a server is Docker Hub's,
// stored under docker's index key, and used for every spelling of a Hub
// image; other registries do not get them.
func TestDockerHubCredentials(t *testing.T) {
	h := newHarness(t)
	h.store.Logins["bob"] = "hub"
	for _, ref := range []string{"docker.io/library/busybox:latest", "docker.io/bob/app:latest", "127.0.0.1:5000/berth/busybox:latest"} {
		h.store.Remote[ref] = dockerapitest.Image(ref)
	}
	if r := h.run("hub\n", "login", "-u", "bob", "--password-stdin"); r.code != 0 {
		t.Fatalf("login: %+v", r)
	}
	if auths := h.configAuths(); len(auths) != 1 || auths["https://index.docker.io/v1/"] == "" {
		t.Fatalf("auths = %v", auths)
	}
	for _, ref := range []string{"busybox", "docker.io/library/busybox", "index.docker.io/library/busybox:latest", "bob/app"} {
		h.store.LastAuth = nil
		h.ok("pull", "-q", ref)
		if a := h.store.LastAuth; a == nil || a.Username != "bob" || a.Password != "hub" {
			t.Errorf("pull %s sent auth %+v", ref, a)
		}
	}
	h.store.LastAuth = nil
	h.ok("pull", "-q", "127.0.0.1:5000/berth/busybox")
	if h.store.LastAuth != nil {
		t.Errorf("Docker Hub's credentials went to another registry: %+v", h.store.LastAuth)
	}
}
