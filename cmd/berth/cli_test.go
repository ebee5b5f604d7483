package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/dockerapi"
	"github.com/berth-dev/berth/dockerapi/dockerapitest"
)

// harness runs berth command lines against the real dockerapi handler served
// over HTTP with an in-memory store, with its own docker config dir.
type harness struct {
	t         *testing.T
	store     *dockerapitest.Store
	host      string
	configDir string
}

func newHarness(t *testing.T) *harness {
	store := dockerapitest.New()
	srv := httptest.NewServer(dockerapi.NewHandler(store, dockerapi.Options{Root: "/var/lib/berth-test", Version: "9.9.9"}))
	t.Cleanup(srv.Close)
	return &harness{t: t, store: store, host: "tcp://" + srv.Listener.Addr().String(), configDir: t.TempDir()}
}

func (h *harness) run(stdin string, args ...string) (stdout, stderr string, code int) {
	h.t.Helper()
	var out, errOut bytes.Buffer
	env := map[string]string{"BERTH_HOST": h.host, "DOCKER_CONFIG": h.configDir}
	code = run(args, streams{in: strings.NewReader(stdin), out: &out, err: &errOut}, func(k string) string { return env[k] })
	return out.String(), errOut.String(), code
}

func (h *harness) ok(args ...string) string {
	h.t.Helper()
	out, errOut, code := h.run("", args...)
	if code != 0 {
		h.t.Fatalf("berth %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
	}
	return out
}

func TestCLIImageLifecycle(t *testing.T) {
	h := newHarness(t)
	img := dockerapitest.Image("bb")
	h.store.Remote["127.0.0.1:5000/berth/busybox:latest"] = img

	out := h.ok("pull", "127.0.0.1:5000/berth/busybox")
	wantPull := "latest: Pulling from berth/busybox\n" + img.Layers[0].Digest.Encoded()[:12] + ": Pulling fs layer\n"
	if !strings.HasPrefix(out, wantPull) || !strings.HasSuffix(out, "Status: Downloaded newer image for 127.0.0.1:5000/berth/busybox:latest\n127.0.0.1:5000/berth/busybox:latest\n") {
		t.Errorf("pull output:\n%s", out)
	}
	if strings.Contains(out, "Downloading") {
		t.Errorf("piped pull shows byte counts:\n%s", out)
	}
	if out := h.ok("pull", "-q", "127.0.0.1:5000/berth/busybox"); out != "127.0.0.1:5000/berth/busybox:latest\n" {
		t.Errorf("pull -q output %q", out)
	}

	h.ok("tag", "127.0.0.1:5000/berth/busybox", "mybox:v1")
	out = h.ok("images")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "REPOSITORY ") || !strings.Contains(lines[0], "IMAGE ID") ||
		!strings.Contains(lines[0], "CREATED") || !strings.HasSuffix(lines[0], "SIZE") {
		t.Fatalf("images output:\n%s", out)
	}
	if !strings.Contains(out, "mybox ") || !strings.Contains(out, "127.0.0.1:5000/berth/busybox ") || !strings.Contains(out, img.ID.Encoded()[:12]) || !strings.Contains(out, "2.2MB") {
		t.Errorf("images output:\n%s", out)
	}
	if out := h.ok("images", "-q"); out != img.ID.Encoded()[:12]+"\n" {
		t.Errorf("images -q = %q", out)
	}
	if out := h.ok("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "mybox"); out != "mybox:v1\n" {
		t.Errorf("image ls --format with a reference = %q", out)
	}
	out = h.ok("images", "--format", "json", "--no-trunc", "mybox")
	var row map[string]string
	if err := json.Unmarshal([]byte(out), &row); err != nil || row["ID"] != img.ID.String() || row["Tag"] != "v1" {
		t.Errorf("images --format json = %q (%v)", out, err)
	}
	if out := h.ok("images", "--digests"); !strings.Contains(strings.Split(out, "\n")[0], "DIGEST") {
		t.Errorf("images --digests header: %q", out)
	}

	out = h.ok("image", "inspect", "mybox:v1")
	var insp []map[string]any
	if err := json.Unmarshal([]byte(out), &insp); err != nil || len(insp) != 1 || insp[0]["Id"] != img.ID.String() {
		t.Fatalf("image inspect = %s (%v)", out, err)
	}
	if !strings.HasPrefix(out, "[\n    {\n") {
		t.Errorf("inspect is not indented like docker's: %q", out[:20])
	}
	if out := h.ok("inspect", "--format", "{{.Id}} {{.Os}} {{json .RootFS.Layers}} {{join .RepoTags \",\"}}", "mybox:v1"); out !=
		img.ID.String()+" linux [\""+img.Config.RootFS.DiffIDs[0].String()+"\"] 127.0.0.1:5000/berth/busybox:latest,mybox:v1\n" {
		t.Errorf("inspect --format = %q", out)
	}
	out, errOut, code := h.run("", "inspect", "mybox:v1", "nosuch")
	if code != 1 || !strings.HasPrefix(errOut, "Error response from daemon: ") || !strings.Contains(errOut, "nosuch") {
		t.Errorf("inspect of a missing image: exit %d stderr %q", code, errOut)
	}
	if err := json.Unmarshal([]byte(out), &insp); err != nil || len(insp) != 1 {
		t.Errorf("inspect with one missing still prints the found one: %q", out)
	}

	tarPath := filepath.Join(t.TempDir(), "img.tar")
	h.ok("save", "-o", tarPath, "mybox:v1")
	if b, err := os.ReadFile(tarPath); err != nil || string(b) != "TAR:mybox:v1" {
		t.Errorf("saved file %q (%v)", b, err)
	}
	if out := h.ok("save", "mybox:v1"); out != "TAR:mybox:v1" {
		t.Errorf("save to piped stdout = %q", out)
	}
	if out := h.ok("load", "-i", tarPath); !strings.HasSuffix(out, "Loaded image: mybox:v1\n") {
		t.Errorf("load -i = %q", out)
	}
	if out, _, code := h.run("TAR:other:1", "load", "-q"); code != 0 || out != "Loaded image: other:1\n" {
		t.Errorf("load from stdin = %q, exit %d", out, code)
	}

	out = h.ok("push", "127.0.0.1:5000/berth/busybox")
	if !strings.HasPrefix(out, "The push refers to repository [127.0.0.1:5000/berth/busybox]\n") || !strings.Contains(out, "latest: digest: "+img.ManifestDigest.String()) {
		t.Errorf("push output:\n%s", out)
	}

	_, errOut, code = h.run("", "rmi", img.ID.Encoded()[:12])
	if code != 1 || !strings.Contains(errOut, "Error response from daemon:") {
		t.Errorf("rmi by ID of a multi-tag image: exit %d, %q", code, errOut)
	}
	if out := h.ok("rmi", "mybox:v1"); out != "Untagged: mybox:v1\n" {
		t.Errorf("rmi tag = %q", out)
	}
	if out := h.ok("rmi", "-f", "127.0.0.1:5000/berth/busybox"); out != "Untagged: 127.0.0.1:5000/berth/busybox:latest\nDeleted: "+img.ID.String()+"\n" {
		t.Errorf("rmi last tag = %q", out)
	}
	_, errOut, code = h.run("", "pull", "127.0.0.1:5000/berth/nosuch")
	if code != 1 || !strings.HasPrefix(errOut, "Error response from daemon: ") || strings.Count(errOut, "\n") != 1 {
		t.Errorf("pull of a missing image: exit %d stderr %q", code, errOut)
	}
	_, errOut, code = h.run("", "pull", "Busybox")
	if code != 1 || !strings.HasPrefix(errOut, "berth: ") {
		t.Errorf("pull of an invalid reference: exit %d stderr %q", code, errOut)
	}
}

func TestCLILoginLogout(t *testing.T) {
	h := newHarness(t)
	h.store.Logins["alice"] = "s3cret"
	h.store.Remote["127.0.0.1:5000/private/app:latest"] = dockerapitest.Image("p")

	_, errOut, code := h.run("wrong\n", "login", "-u", "alice", "--password-stdin", "127.0.0.1:5000")
	if code != 1 || !strings.Contains(errOut, "Error response from daemon:") {
		t.Errorf("login with a wrong password: exit %d %q", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(h.configDir, "config.json")); err == nil {
		t.Error("a failed login wrote config.json")
	}
	out, _, code := h.run("s3cret\n", "login", "-u", "alice", "--password-stdin", "127.0.0.1:5000")
	if code != 0 || !strings.HasSuffix(out, "Login Succeeded\n") {
		t.Fatalf("login: exit %d, %q", code, out)
	}
	cfgPath := filepath.Join(h.configDir, "config.json")
	fi, err := os.Stat(cfgPath)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("config.json: %v %v", fi, err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(cfgPath)
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths["127.0.0.1:5000"].Auth != base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) {
		t.Fatalf("config.json = %s", b)
	}

	// Pulls from that registry now carry the credentials.
	h.ok("pull", "-q", "127.0.0.1:5000/private/app")
	if a := h.store.LastAuth; a == nil || a.Username != "alice" || a.Password != "s3cret" {
		t.Errorf("auth sent with pull = %+v", a)
	}

	if out := h.ok("logout", "127.0.0.1:5000"); out != "Removing login credentials for 127.0.0.1:5000\n" {
		t.Errorf("logout = %q", out)
	}
	if out := h.ok("logout", "127.0.0.1:5000"); out != "Not logged in to 127.0.0.1:5000\n" {
		t.Errorf("second logout = %q", out)
	}
	h.ok("pull", "-q", "127.0.0.1:5000/private/app")
	if h.store.LastAuth != nil {
		t.Errorf("auth sent after logout = %+v", h.store.LastAuth)
	}
}

func TestCLIVersionInfo(t *testing.T) {
	h := newHarness(t)
	out := h.ok("version")
	if !strings.Contains(out, "Server: Berth") || !strings.Contains(out, "9.9.9") || !strings.Contains(out, "API version:") {
		t.Errorf("version:\n%s", out)
	}
	if out := h.ok("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"); out != "9.9.9 1.57\n" {
		t.Errorf("version --format = %q", out)
	}
	if out := h.ok("info", "--format", "{{.DockerRootDir}} {{.Images}}"); out != "/var/lib/berth-test 0\n" {
		t.Errorf("info --format = %q", out)
	}
	if out := h.ok("info"); !regexp.MustCompile(`(?m)^ Storage Driver: +overlayfs$`).MatchString(out) {
		t.Errorf("info:\n%s", out)
	}
	_, errOut, code := h.run("", "--host", "unix:///nonexistent/berth.sock", "images")
	if code != 1 || strings.Count(errOut, "\n") != 1 {
		t.Errorf("no daemon: exit %d stderr %q", code, errOut)
	}
}
