package dockerapi

import (
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/internal/testutil"
)

// TestDockerCLI drives the handler with the stock docker CLI, the client
// whose expectations matter most, over a unix socket as berthd serves it.
func TestDockerCLI(t *testing.T) {
	dockerBin := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	f := dockerapitest.New()
	img := dockerapitest.Image("bb")
	f.Remote["127.0.0.1:5000/berth/busybox:latest"] = img
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: NewHandler(f, Options{Version: "0.0.1-test"})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	cfg := t.TempDir()
	docker := func(args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), dockerBin, args...)
		cmd.Env = []string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + cfg, "HOME=" + cfg, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	must := func(args ...string) string {
		t.Helper()
		out, err := docker(args...)
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}

	if out := must("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}"); strings.TrimSpace(out) != "0.0.1-test "+maxAPIVersion {
		t.Errorf("docker version = %q", out)
	}
	out := must("pull", "127.0.0.1:5000/berth/busybox")
	if !strings.Contains(out, "Status: Downloaded newer image for 127.0.0.1:5000/berth/busybox:latest") {
		t.Errorf("docker pull:\n%s", out)
	}
	must("tag", "127.0.0.1:5000/berth/busybox", "mybox:v1")
	out = must("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
	if !strings.Contains(out, "mybox:v1 "+img.ID.Encoded()[:12]) {
		t.Errorf("docker images:\n%s", out)
	}
	if out := must("image", "inspect", "--format", "{{.Id}} {{.Os}}", "mybox:v1"); strings.TrimSpace(out) != img.ID.String()+" linux" {
		t.Errorf("docker image inspect = %q", out)
	}
	// Without --type docker looks for a container first.
	if out := must("inspect", "--format", "{{.Id}}", "mybox:v1"); strings.TrimSpace(out) != img.ID.String() {
		t.Errorf("docker inspect = %q", out)
	}
	// The default renderings must not trip over a field Berth leaves empty.
	for _, verb := range []string{"info", "version", "images"} {
		if out := must(verb); testing.Verbose() {
			t.Logf("docker %s:\n%s", verb, out)
		}
	}
	tar := filepath.Join(t.TempDir(), "img.tar")
	must("save", "-o", tar, "mybox:v1")
	if out := must("load", "-i", tar); !strings.Contains(out, "Loaded image: mybox:v1") {
		t.Errorf("docker load = %q", out)
	}
	if out := must("info", "--format", "{{.Driver}} {{.OSType}}"); strings.TrimSpace(out) != "overlayfs linux" {
		t.Errorf("docker info = %q", out)
	}
	if out := must("rmi", "mybox:v1"); strings.TrimSpace(out) != "Untagged: mybox:v1" {
		t.Errorf("docker rmi = %q", out)
	}
	out, err = docker("inspect", "nosuch")
	if err == nil || !strings.Contains(out, "No such object: nosuch") {
		t.Errorf("docker inspect nosuch: %v %q", err, out)
	}
	out, err = docker("ps")
	if err == nil || !strings.Contains(out, "not implemented in berth yet") {
		t.Errorf("docker ps: %v %q", err, out)
	}
}
