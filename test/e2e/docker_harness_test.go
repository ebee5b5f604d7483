package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// dockerEnv is a berthd with a busybox image pulled, driven by the stock
// docker CLI (or another docker-like CLI).
type dockerEnv struct {
	t   *testing.T
	d   *daemon
	reg *testRegistry
	// bin is the CLI, env its environment.
	bin string
	env []string
	// Image is busybox's reference in the test registry.
	Image string
	api   *client.Client
}

// stockDocker finds the stock docker CLI (28.x at /usr/local/bin); under CI
// a missing one fails.
func stockDocker(t testing.TB) string {
	if fileExists("/usr/local/bin/docker") {
		return "/usr/local/bin/docker"
	}
	return testutil.LookPath(t, "docker", "make deps installs the docker CLI")
}

func newDockerEnv(t *testing.T) *dockerEnv {
	t.Helper()
	return newCLIEnv(t, stockDocker(t), func(d *daemon) []string {
		return []string{"DOCKER_HOST=unix://" + d.DockerSock, "DOCKER_CONTEXT="}
	})
}

// newBerthEnv is newDockerEnv with the berth CLI, which follows
// BERTH_HOST (DOCKER_HOST points elsewhere, as at a machine with dockerd).
func newBerthEnv(t *testing.T) *dockerEnv {
	t.Helper()
	_, berth := binaries(t)
	return newCLIEnv(t, berth, func(d *daemon) []string {
		return []string{"BERTH_HOST=unix://" + d.DockerSock, "DOCKER_HOST=unix:///nonexistent/docker.sock", "DOCKER_CONTEXT=nosuch"}
	})
}

func newCLIEnv(t *testing.T, bin string, hostEnv func(*daemon) []string) *dockerEnv {
	t.Helper()
	reg := newRegistry(t)
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemonWith(t, reg, daemonOptions{Shim: shimBinary(t)})
	home := t.TempDir()
	e := &dockerEnv{
		t: t, d: d, reg: reg, bin: bin, Image: bb.Ref,
		env: append([]string{"HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}, hostEnv(d)...),
	}
	e.api = d.Docker()
	e.cli("pull", "-q", e.Image)
	t.Cleanup(e.cleanup)
	return e
}

// cli runs the CLI and returns its stdout; a failure fails the test.
func (e *dockerEnv) cli(args ...string) string {
	e.t.Helper()
	return run(e.t, e.env, e.bin, args...)
}

// cliErr runs the CLI and returns stdout, stderr and its exit code.
func (e *dockerEnv) cliErr(args ...string) (string, string, int) {
	e.t.Helper()
	out, errOut, err := runErr(e.env, e.bin, args...)
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			e.t.Fatalf("%s %s: %v", filepath.Base(e.bin), strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return out, errOut, code
}

// cliIn runs the CLI with stdin.
func (e *dockerEnv) cliIn(stdin string, args ...string) (string, int) {
	e.t.Helper()
	cmd := exec.Command(e.bin, args...)
	cmd.Env = append(os.Environ(), e.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), code
}

// tty runs the CLI under a pseudo terminal (script), with a stdin that
// stays open for hold and returns what the terminal showed. At its
// stdin's end script types the EOF character (^D) into the terminal; one
// typed while the terminal is still in canonical mode waits in the line
// discipline as a NUL end-of-file mark, which a CLI that then puts the
// terminal in raw mode (docker exec/run -it) reads as a byte and sends to
// the container, whose terminal echoes it as ^@. Neither the CLI nor the
// daemon makes that NUL: `script -qc "sleep 0.5; stty raw -echo; head -c1
// | od -c" /dev/null </dev/null` reads it too. Input is typed a second
// after the start, once the CLI has the terminal in raw mode (before, the
// line discipline would eat control characters such as ^Q); an input of
// several parts is typed a part a second.
func (e *dockerEnv) tty(input string, hold time.Duration, args ...string) (string, int) {
	return e.ttyParts([]string{input}, hold, args...)
}

func (e *dockerEnv) ttyParts(input []string, hold time.Duration, args ...string) (string, int) {
	e.t.Helper()
	scriptBin := testutil.LookPath(e.t, "script", "util-linux's script runs commands under a pty")
	line := e.bin
	for _, a := range args {
		line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	cmd := exec.Command(scriptBin, "-qec", line, "/dev/null")
	cmd.Env = append(os.Environ(), e.env...)
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		for _, part := range input {
			time.Sleep(time.Second)
			io.WriteString(pw, part)
		}
		time.Sleep(hold)
		pw.Close()
	}()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		e.t.Fatalf("%v under a tty did not end", args)
	}
	pw.Close()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	}
	return out.String(), code
}

// cleanup removes every container and checks that nothing of them is
// left: mounts under the daemon's directories, processes started from
// them, the containers' cgroups.
func (e *dockerEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if e.d.cmd == nil {
		return
	}
	list, err := e.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		e.t.Errorf("cleanup: list containers: %v", err)
		return
	}
	var ids []string
	for _, c := range list.Items {
		ids = append(ids, c.ID)
		if _, err := e.api.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
			e.t.Errorf("cleanup: remove %s: %v", c.ID, err)
		}
	}
	e.checkNoLeftovers(ids)
}

// checkNoLeftovers fails when anything of the daemon's containers is
// left: a mount under its directories, a shim or container process, a
// cgroup of one of ids.
func (e *dockerEnv) checkNoLeftovers(ids []string) {
	e.t.Helper()
	base := filepath.Dir(e.d.Root)
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], base+"/") {
			e.t.Errorf("leftover mount %s", f[4])
		}
	}
	for _, pid := range e.d.shimPids() {
		e.t.Errorf("leftover shim %d", pid)
	}
	for _, id := range ids {
		if dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth-pod-" + id[:16]); len(dirs) > 0 {
			e.t.Errorf("leftover cgroups of %s: %v", id[:12], dirs)
		}
	}
}

// shimPids lists the berth-shim processes serving this daemon's state
// directory.
func (d *daemon) shimPids() []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		// A shim's working directory is /; it writes its pid file under
		// <state>/c/<id>.
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
		for _, fd := range fds {
			if t, err := os.Readlink(fd); err == nil && strings.HasPrefix(t, d.State+"/c/") {
				if b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.TrimSpace(string(b)) == "berth-shim" {
					out = append(out, pid)
				}
				break
			}
		}
	}
	return out
}

// await polls cond for up to 30 s.
func await(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !waitFor(30*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// rawResponse is an HTTP answer read whole.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// rawRequest sends one request to the Docker socket as given (no client
// library in between).
func (d *daemon) rawRequest(t testing.TB, method, path, body string) rawResponse {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dl net.Dialer
		return dl.DialContext(ctx, "unix", d.DockerSock)
	}}}
	req, err := http.NewRequest(method, "http://docker"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// dialDocker opens a raw connection to the Docker socket.
func (d *daemon) dialDocker(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", d.DockerSock)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
