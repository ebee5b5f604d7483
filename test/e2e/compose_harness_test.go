package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/internal/testutil"
)

// composeClient is one of the compose programs a user brings to berthd.
type composeClient struct {
	name string
	argv []string
	// v1 is Debian's docker-compose 1.29 (Python): "_" in container names,
	// configs ignored (a Swarm feature there), builds by `docker build`.
	v1 bool
}

// composeClients are the three clients of issue 11, as make deps installs
// them: berth compose (built in), the compose v5 plugin under the docker
// CLI, and docker-compose 1.29.
func composeClients(t *testing.T) []composeClient {
	_, berth := binaries(t)
	return []composeClient{
		{name: "berth compose", argv: []string{berth, "compose"}},
		{name: "docker compose", argv: []string{stockDocker(t), "compose"}},
		{name: "docker-compose", argv: []string{testutil.LookPath(t, "docker-compose", "make deps installs Debian's docker-compose")}, v1: true},
	}
}

// forEachComposeClient runs fn as a subtest per client.
func forEachComposeClient(t *testing.T, fn func(t *testing.T, c composeClient)) {
	for _, c := range composeClients(t) {
		t.Run(strings.ReplaceAll(c.name, " ", "_"), func(t *testing.T) { fn(t, c) })
	}
}

// composeEnv is one compose client driving one berthd (busybox pulled) on
// a project directory of its own.
type composeEnv struct {
	*dockerEnv
	c       composeClient
	dir     string
	project string
	// cenv is the client's environment: the daemon's socket for docker
	// and berth, a docker config that finds the compose plugin.
	cenv []string
}

func newComposeEnv(t *testing.T, c composeClient, project string) *composeEnv {
	t.Helper()
	de := newDockerEnv(t)
	plugin := tool(t, "cli-plugins/docker-compose", "BERTH_COMPOSE_PLUGIN")
	var cfg string
	for _, kv := range de.env {
		if v, ok := strings.CutPrefix(kv, "DOCKER_CONFIG="); ok {
			cfg = v
		}
	}
	writeFile(t, filepath.Join(cfg, "config.json"), `{"cliPluginsExtraDirs": ["`+filepath.Dir(plugin)+`"]}`)
	e := &composeEnv{dockerEnv: de, c: c, dir: t.TempDir(), project: project}
	e.cenv = append(append([]string{}, de.env...), "BERTH_HOST=unix://"+de.d.DockerSock,
		// docker-compose 1.29 runs `docker build` and `docker exec`: the
		// stock CLI first in PATH.
		"PATH="+filepath.Dir(stockDocker(t))+":"+os.Getenv("PATH"))
	return e
}

// composeCmd is the client's command line for args, in the project dir.
func (e *composeEnv) composeCmd(ctx context.Context, env []string, args ...string) *exec.Cmd {
	argv := append(append(append([]string{}, e.c.argv...), "-p", e.project), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir = e.dir
	cmd.Env = append(append(os.Environ(), e.cenv...), env...)
	return cmd
}

// composeErr runs the client and returns stdout, stderr and the exit code.
func (e *composeEnv) composeErr(args ...string) (string, string, int) {
	e.t.Helper()
	return e.composeEnvErr(nil, args...)
}

// composeEnvErr is composeErr with env added to the client's environment.
func (e *composeEnv) composeEnvErr(env []string, args ...string) (string, string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := e.composeCmd(ctx, env, args...)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok || ctx.Err() != nil {
			e.t.Fatalf("%s %s: %v (%v)\n%s%s", e.c.name, strings.Join(args, " "), err, ctx.Err(), o.String(), er.String())
		}
		code = ee.ExitCode()
	}
	return o.String(), er.String(), code
}

// compose runs the client; a failure fails the test.
func (e *composeEnv) compose(args ...string) string {
	e.t.Helper()
	out, errOut, code := e.composeErr(args...)
	if code != 0 {
		e.t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", e.c.name, strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// containers lists the project's containers of service (all services if
// empty), running or not, through compose's own labels.
func (e *composeEnv) containers(service string) []container.Summary {
	e.t.Helper()
	f := client.Filters{}.Add("label", "com.docker.compose.project="+e.project)
	if service != "" {
		f = f.Add("label", "com.docker.compose.service="+service)
	}
	list, err := e.api.ContainerList(ctxT(e.t), client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		e.t.Fatal(err)
	}
	return list.Items
}

// one is the single container of service.
func (e *composeEnv) one(service string) container.InspectResponse {
	e.t.Helper()
	cs := e.containers(service)
	if len(cs) != 1 {
		e.t.Fatalf("service %s has %d containers, want 1", service, len(cs))
	}
	return e.inspect(cs[0].ID)
}

func (e *composeEnv) inspect(id string) container.InspectResponse {
	e.t.Helper()
	r, err := e.api.ContainerInspect(ctxT(e.t), id, client.ContainerInspectOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.Container
}

// name is the container name the client gives a service's n-th replica.
func (e *composeEnv) name(service string, n int) string {
	if e.c.v1 {
		return fmt.Sprintf("%s_%s_%d", e.project, service, n)
	}
	return fmt.Sprintf("%s-%s-%d", e.project, service, n)
}

// composeTTY runs the client under a pseudo terminal (util-linux's
// script) with input typed into it, the terminal kept open for hold, and
// returns what the terminal showed (carriage returns dropped) and the
// exit code.
func (e *composeEnv) composeTTY(input string, hold time.Duration, args ...string) (string, int) {
	e.t.Helper()
	scriptBin := testutil.LookPath(e.t, "script", "util-linux's script runs commands under a pty")
	line := ""
	for _, a := range append(append(append([]string{}, e.c.argv...), "-p", e.project), args...) {
		line += " '" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, scriptBin, "-qec", line, "/dev/null")
	cmd.Dir = e.dir
	cmd.Env = append(os.Environ(), e.cenv...)
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	go func() {
		io.WriteString(pw, input)
		time.Sleep(hold)
		pw.Close()
	}()
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil || ctx.Err() != nil {
		e.t.Fatalf("%s %v under a tty: %v %v\n%s", e.c.name, args, err, ctx.Err(), out.String())
	}
	return strings.ReplaceAll(out.String(), "\r", ""), code
}

// bgCompose is a long-running compose command (logs -f, up attached)
// whose output lines the test watches.
type bgCompose struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	seen []string
	news chan struct{}
	done chan struct{}
}

func (e *composeEnv) startBG(args ...string) *bgCompose {
	e.t.Helper()
	b := &bgCompose{news: make(chan struct{}, 1), done: make(chan struct{})}
	b.cmd = e.composeCmd(context.Background(), nil, args...)
	pr, pw := io.Pipe()
	b.cmd.Stdout, b.cmd.Stderr = pw, pw
	if err := b.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		b.cmd.Wait()
		pw.Close()
	}()
	go func() {
		defer close(b.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			b.mu.Lock()
			// docker-compose 1.29 colours the service prefixes even
			// into a pipe.
			b.seen = append(b.seen, ansiEscape.ReplaceAllString(sc.Text(), ""))
			b.mu.Unlock()
			select {
			case b.news <- struct{}{}:
			default:
			}
		}
	}()
	e.t.Cleanup(b.kill)
	return b
}

// waitFor waits until the output so far satisfies cond.
func (b *bgCompose) waitFor(timeout time.Duration, cond func(out string) bool) bool {
	deadline := time.After(timeout)
	for {
		if cond(b.output()) {
			return true
		}
		select {
		case <-b.news:
		case <-b.done:
			return cond(b.output())
		case <-deadline:
			return false
		}
	}
}

func (b *bgCompose) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.seen, "\n")
}

// interrupt sends SIGINT (a user's Ctrl-C) and waits up to timeout for the
// command to end.
func (b *bgCompose) interrupt(timeout time.Duration) bool {
	_ = b.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-b.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// kill ends the command (its own process, by PID).
func (b *bgCompose) kill() {
	_ = b.cmd.Process.Kill()
	<-b.done
}

// parseTime reads a timestamp of container inspect.
func parseTime(t testing.TB, what, s string) time.Time {
	t.Helper()
	ts, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return ts
}

// ansiEscape is a terminal control sequence (colours, line erase).
var ansiEscape = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// lines counts the output lines matching re.
func lines(out string, re *regexp.Regexp) int {
	n := 0
	for _, l := range strings.Split(out, "\n") {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}
