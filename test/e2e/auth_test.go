package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// pushAuth pushes the busybox image to a registry that wants credentials.
func pushAuth(t *testing.T, reg *testRegistry, repo string) pushed {
	t.Helper()
	img := mustImage(t, testimage.Busybox)
	ref, err := name.ParseReference(reg.Host + "/" + repo)
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := strings.Cut(reg.basicAuth, ":")
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: user, Password: pass})); err != nil {
		t.Fatal(err)
	}
	id, _ := img.ConfigName()
	md, _ := img.Digest()
	return pushed{Ref: ref.String(), ID: id.String(), Manifest: md.String()}
}

// TestCRIPullAuth: the kubelet's credentials come in the request.
func TestCRIPullAuth(t *testing.T) {
	reg := newAuthRegistry(t, "alice:s3cret")
	img := pushAuth(t, reg, "private/busybox:v1")
	d := startDaemon(t, reg)
	_, is := d.CRI()
	ctx := ctxT(t)
	_, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref}})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous pull from a private registry: %v; want code Unauthenticated", err)
	}
	_, err = is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref},
		Auth: &runtimeapi.AuthConfig{Username: "alice", Password: "wrong"}})
	if err == nil {
		t.Fatal("pull with a wrong password succeeded")
	}
	resp, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: img.Ref},
		Auth: &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}})
	if err != nil || resp.ImageRef != img.ID {
		t.Fatalf("pull with credentials = %v, %v", resp, err)
	}
}

// loginScenario: login checks the password, stores it in the user's
// docker config, and later pulls and pushes use it; logout forgets it.
func loginScenario(t *testing.T, bin string, env []string, reg *testRegistry, configDir string) {
	img := pushAuth(t, reg, "private/busybox:v1")
	_, stderr, err := runErr(env, bin, "login", "-u", "alice", "-p", "wrong", reg.Host)
	if err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	if !strings.Contains(strings.ToLower(stderr), "unauthorized") && !strings.Contains(strings.ToLower(stderr), "refused the credentials") {
		t.Errorf("login with a wrong password said %q", stderr)
	}
	if _, err := os.Stat(filepath.Join(configDir, "config.json")); err == nil {
		b, _ := os.ReadFile(filepath.Join(configDir, "config.json"))
		if strings.Contains(string(b), reg.Host) {
			t.Errorf("a failed login stored credentials: %s", b)
		}
	}
	cmd := exec.Command(bin, "login", "-u", "alice", "--password-stdin", reg.Host)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader("s3cret\n")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "Login Succeeded") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(configDir, "config.json"))
	if err != nil || !strings.Contains(string(b), reg.Host) {
		t.Fatalf("config.json after login: %s, %v", b, err)
	}
	if out := run(t, env, bin, "pull", img.Ref); !strings.Contains(out, img.Manifest) {
		t.Errorf("pull with stored credentials:\n%s", out)
	}
	run(t, env, bin, "tag", img.Ref, reg.Host+"/private/copy:v2")
	run(t, env, bin, "push", reg.Host+"/private/copy:v2")
	run(t, env, bin, "logout", reg.Host)
	run(t, env, bin, "rmi", img.Ref, reg.Host+"/private/copy:v2")
	// As with dockerd: a refused pull says "may require 'docker login'" and
	// is not a 401, which would make the docker CLI prompt for a password.
	_, stderr, err = runErr(env, bin, "pull", reg.Host+"/private/copy:v2")
	if err == nil {
		t.Error("pull after logout succeeded")
	}
	if !strings.Contains(stderr, "may require 'docker login'") {
		t.Errorf("pull after logout said %q", stderr)
	}
}

func TestBerthLogin(t *testing.T) {
	reg := newAuthRegistry(t, "alice:s3cret")
	d := startDaemon(t, reg)
	_, berth := binaries(t)
	cfg := filepath.Join(t.TempDir(), ".docker")
	loginScenario(t, berth, []string{"BERTH_HOST=unix://" + d.DockerSock, "DOCKER_CONFIG=" + cfg}, reg, cfg)
}

func TestDockerLogin(t *testing.T) {
	docker := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	reg := newAuthRegistry(t, "alice:s3cret")
	d := startDaemon(t, reg)
	cfg := filepath.Join(t.TempDir(), ".docker")
	loginScenario(t, docker, []string{"DOCKER_HOST=unix://" + d.DockerSock, "DOCKER_CONFIG=" + cfg}, reg, cfg)
}
