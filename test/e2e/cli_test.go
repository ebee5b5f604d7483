package e2e

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// cliScenario runs the image verbs of a docker-like CLI (berth or docker)
// against berthd's Docker-compatible socket, as a user would type them.
func cliScenario(t *testing.T, bin string, env []string, reg *testRegistry, d *daemon) {
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	cli := func(args ...string) string { return run(t, env, bin, args...) }

	out := cli("pull", bb.Ref)
	if !strings.Contains(out, bb.Manifest) {
		t.Errorf("pull output lacks the digest %s:\n%s", bb.Manifest, out)
	}
	// docker 28 prints the classic table, docker 29 (berth) its new view:
	// both have an image ID column.
	out = cli("images")
	if !regexp.MustCompile(`IMAGE +ID`).MatchString(out) || !strings.Contains(out, reg.Host+"/berth/busybox") || !strings.Contains(out, bb.ID[7:19]) {
		t.Errorf("images:\n%s", out)
	}
	if got := strings.TrimSpace(cli("images", "-q", "--no-trunc")); got != bb.ID {
		t.Errorf("images -q --no-trunc = %q, want %q", got, bb.ID)
	}
	out = cli("history", bb.Ref)
	if !strings.Contains(out, "CREATED BY") || !strings.Contains(out, bb.ID[7:19]) || !strings.Contains(out, "berth testimage") {
		t.Errorf("history:\n%s", out)
	}
	cli("tag", bb.Ref, "mybox:v1")
	if got := strings.TrimSpace(cli("image", "inspect", "--format", "{{.Id}} {{len .RepoTags}}", "mybox:v1")); got != bb.ID+" 2" {
		t.Errorf("inspect --format = %q, want %q", got, bb.ID+" 2")
	}
	var inspected []map[string]any
	if err := json.Unmarshal([]byte(cli("inspect", "mybox:v1")), &inspected); err != nil || len(inspected) != 1 || inspected[0]["Id"] != bb.ID {
		t.Errorf("inspect JSON = %v, %v", inspected, err)
	}

	archive := filepath.Join(t.TempDir(), "busybox.tar")
	cli("save", "-o", archive, "mybox:v1")
	out = cli("rmi", "mybox:v1")
	if !strings.Contains(out, "Untagged: mybox:v1") {
		t.Errorf("rmi of one of two tags:\n%s", out)
	}
	out = cli("rmi", bb.Ref)
	if !strings.Contains(out, "Deleted: "+bb.ID) {
		t.Errorf("rmi of the last tag:\n%s", out)
	}
	if got := strings.TrimSpace(cli("images", "-q")); got != "" {
		t.Errorf("images after rmi: %q", got)
	}
	out = cli("load", "-i", archive)
	if !strings.Contains(out, "mybox:v1") {
		t.Errorf("load output:\n%s", out)
	}
	if got := strings.TrimSpace(cli("images", "-q", "--no-trunc")); got != bb.ID {
		t.Errorf("images after load = %q, want %q", got, bb.ID)
	}

	// Push to another repository of the registry and pull it back by digest.
	cli("tag", "mybox:v1", reg.Host+"/berth/pushed:v1")
	cli("push", reg.Host+"/berth/pushed:v1")
	cli("rmi", "-f", bb.ID)
	out = cli("pull", reg.Host+"/berth/pushed@"+bb.Manifest)
	if !strings.Contains(out, bb.Manifest) {
		t.Errorf("pull of the pushed image by digest:\n%s", out)
	}

	// Errors: one clear line, non-zero exit.
	_, stderr, err := runErr(env, bin, "rmi", "no-such-image:v9")
	if err == nil {
		t.Fatal("rmi of a missing image succeeded")
	}
	if !strings.Contains(strings.ToLower(stderr), "no such image") {
		t.Errorf("rmi of a missing image said %q", stderr)
	}
}

// TestBerthCLIImages runs the scenario with berth, with DOCKER_HOST and
// DOCKER_CONTEXT pointing elsewhere, as they would at a real dockerd: berth
// follows BERTH_HOST.
func TestBerthCLIImages(t *testing.T) {
	reg := newRegistry(t)
	d := startDaemon(t, reg)
	_, berth := binaries(t)
	home := t.TempDir()
	cliScenario(t, berth, []string{"BERTH_HOST=unix://" + d.DockerSock, "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"DOCKER_HOST=unix:///nonexistent/docker.sock", "DOCKER_CONTEXT=nosuch"}, reg, d)
}

// TestComposeClients: the three compose clients reach berthd as installed
// by make deps, with nothing else set up: berth compose (built in, at the
// version go.mod pins), the compose v5 plugin under the docker CLI, and
// Debian's docker-compose 1.29. Each pulls a project's image.
func TestComposeClients(t *testing.T) {
	reg := newRegistry(t)
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemon(t, reg)
	_, berth := binaries(t)
	docker := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	dockerCompose := testutil.LookPath(t, "docker-compose", "make deps installs Debian's docker-compose")
	plugin := tool(t, "cli-plugins/docker-compose", "BERTH_COMPOSE_PLUGIN")

	out, err := exec.Command("go", "list", "-m", "-f", "{{.Version}}", "github.com/docker/compose/v5").Output()
	if err != nil {
		t.Fatal(err)
	}
	composeVersion := strings.TrimSpace(string(out))
	home := t.TempDir()
	cfg := filepath.Join(home, ".docker")
	// The docker CLI finds the plugin through its config.
	writeFile(t, filepath.Join(cfg, "config.json"), `{"cliPluginsExtraDirs": ["`+filepath.Dir(plugin)+`"]}`)
	env := []string{"HOME=" + home, "DOCKER_CONFIG=" + cfg, "BERTH_HOST=unix://" + d.DockerSock, "DOCKER_HOST=unix://" + d.DockerSock}

	if got, want := run(t, env, berth, "compose", "version"), "Docker Compose version "+composeVersion+"\n"; got != want {
		t.Errorf("berth compose version = %q, want %q", got, want)
	}
	if got, want := run(t, env, docker, "compose", "version"), "Docker Compose version "+composeVersion+"\n"; got != want {
		t.Errorf("docker compose version = %q, want %q", got, want)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "compose.yaml"), "services:\n  app:\n    image: "+bb.Ref+"\n")
	for _, c := range []struct {
		name string
		argv []string
	}{
		{"berth compose", []string{berth, "compose"}},
		{"docker compose", []string{docker, "compose"}},
		{"docker-compose", []string{dockerCompose}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, stderr, err := runErr(env, c.argv[0], append(c.argv[1:], "--project-directory", dir, "-f", filepath.Join(dir, "compose.yaml"), "pull")...)
			if err != nil {
				t.Fatalf("%s pull: %v\n%s", c.name, err, stderr)
			}
			if got := strings.TrimSpace(run(t, env, berth, "images", "-q", "--no-trunc")); got != bb.ID {
				t.Errorf("images after %s pull = %q, want %q", c.name, got, bb.ID)
			}
			run(t, env, berth, "rmi", bb.Ref)
		})
	}
}

// TestDockerCLIImages runs the stock docker client against berthd.
func TestDockerCLIImages(t *testing.T) {
	docker := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	reg := newRegistry(t)
	d := startDaemon(t, reg)
	home := t.TempDir()
	cliScenario(t, docker, []string{"DOCKER_HOST=unix://" + d.DockerSock, "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}, reg, d)
}

// TestDockerAPIPing checks the API negotiation the moby client does.
func TestDockerAPIPing(t *testing.T) {
	reg := newRegistry(t)
	d := startDaemon(t, reg)
	c := d.Docker()
	ping, err := c.Ping(ctxT(t), client.PingOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ping.APIVersion == "" || ping.OSType != "linux" {
		t.Errorf("ping = %+v", ping)
	}
}
