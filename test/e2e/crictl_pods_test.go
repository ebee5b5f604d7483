package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestCrictlDebugSession drives a pod with crictl as someone debugging a
// node would: runp, create, start, exec -it (through a pseudo-terminal),
// logs -f, attach, port-forward, stats, stopp, rmp. It asserts on what the
// user sees in crictl's output.
func TestCrictlDebugSession(t *testing.T) {
	crictl := tool(t, "crictl", "CRICTL")
	script := testutil.LookPath(t, "script", "util-linux; exec -it needs a pseudo-terminal")
	e := newPodEnv(t)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "crictl.yaml")
	writeFile(t, cfgFile, fmt.Sprintf("runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 60\n", e.d.CRISocket, e.d.CRISocket))
	c := func(args ...string) string {
		t.Helper()
		return strings.TrimSpace(run(t, nil, crictl, append([]string{"--config", cfgFile}, args...)...))
	}

	podJSON := filepath.Join(dir, "pod.json")
	writeFile(t, podJSON, fmt.Sprintf(`{
  "metadata": {"name": "debug", "namespace": "e2e", "uid": "uid-debug"},
  "hostname": "debughost",
  "log_directory": %q,
  "linux": {"cgroup_parent": %q, "security_context": {"namespace_options": {"pid": 1}}}
}`, filepath.Join(e.LogDir, "debug"), e.CgParent+"-debug"))
	webJSON := filepath.Join(dir, "web.json")
	writeFile(t, webJSON, fmt.Sprintf(`{
  "metadata": {"name": "web"},
  "image": {"image": %q},
  "command": ["sh", "-c", "mkdir -p /www && echo hello via port-forward > /www/index.html && httpd -p 8080 -h /www && i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"],
  "log_path": "web.log"
}`, e.Image))
	catJSON := filepath.Join(dir, "cat.json")
	writeFile(t, catJSON, fmt.Sprintf(`{
  "metadata": {"name": "cat"},
  "image": {"image": %q},
  "command": ["cat"],
  "stdin": true,
  "log_path": "cat.log"
}`, e.Image))

	podID := c("runp", podJSON)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(podID) {
		t.Fatalf("crictl runp printed %q, want a pod ID", podID)
	}
	web := c("create", podID, webJSON, podJSON)
	cat := c("create", podID, catJSON, podJSON)
	if out := c("ps", "-a", "--name", "web"); !strings.Contains(out, web[:13]) || !strings.Contains(out, "Created") {
		t.Errorf("crictl ps -a after create:\n%s", out)
	}
	if out := c("start", web); out != web {
		t.Errorf("crictl start printed %q, want %s", out, web)
	}
	c("start", cat)
	out := c("pods", "--name", "debug")
	if !strings.Contains(out, podID[:13]) || !strings.Contains(out, "Ready") || !strings.Contains(out, "debug") {
		t.Errorf("crictl pods:\n%s", out)
	}
	out = c("ps", "--pod", podID)
	if strings.Count(out, "Running") != 2 {
		t.Errorf("crictl ps --pod: want 2 running containers:\n%s", out)
	}

	// exec -it: crictl wants a terminal on its side; script gives it one.
	execCmd := fmt.Sprintf("%s --config %s exec -it %s sh -c 'tty; hostname; exit 4'", crictl, cfgFile, web)
	stdout, stderr, err := runErr(nil, script, "-qec", execCmd, "/dev/null")
	// crictl reports the command's exit code in a message and exits 1.
	var exitErr *exec.ExitError
	if !strings.Contains(stdout, "/dev/pts/") || !strings.Contains(stdout, "debughost") || !strings.Contains(stdout, "command terminated with exit code 4") ||
		!asExit(err, &exitErr) || exitErr.ExitCode() != 1 {
		t.Errorf("crictl exec -it (tty; hostname; exit 4): %v\nstdout:\n%s\nstderr:\n%s", err, stdout, stderr)
	}

	// logs -f prints lines the container writes after it started.
	logs := startBG(t, crictl, "--config", cfgFile, "logs", "-f", web)
	first := -1
	if !logs.waitLine(10*time.Second, func(l string) bool {
		n, ok := lineNumber(l)
		if ok && first < 0 {
			first = n
		}
		return ok && n >= first+5
	}) {
		t.Errorf("crictl logs -f did not follow new lines:\n%s", logs.output())
	}
	logs.stop()

	// attach -i: what goes to cat's stdin comes back on its stdout.
	attach := startBG(t, crictl, "--config", cfgFile, "attach", "-i", cat)
	time.Sleep(300 * time.Millisecond) // crictl needs its stream up before input means anything
	io.WriteString(attach.stdin, "hello through attach\n")
	if !attach.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, "hello through attach") }) {
		t.Errorf("crictl attach -i did not echo the input:\n%s", attach.output())
	}
	attach.stop()
	if b, _ := os.ReadFile(filepath.Join(e.LogDir, "debug", "cat.log")); !strings.Contains(string(b), " stdout F hello through attach") {
		t.Errorf("cat.log lacks the attached input:\n%s", b)
	}

	// port-forward to busybox httpd in the pod.
	lport := freePort(t)
	pf := startBG(t, crictl, "--config", cfgFile, "port-forward", podID, fmt.Sprintf("%d:8080", lport))
	if !pf.waitLine(10*time.Second, func(l string) bool { return strings.Contains(l, "Forwarding from") }) {
		t.Errorf("crictl port-forward printed:\n%s", pf.output())
	}
	if body, err := httpGet("http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(lport)) + "/"); err != nil || body != "hello via port-forward\n" {
		t.Errorf("GET through crictl port-forward = %q, %v\n%s", body, err, pf.output())
	}
	pf.stop()

	out = c("stats", "--id", web)
	if !strings.Contains(out, "CPU %") || !strings.Contains(out, web[:13]) || !strings.Contains(out, "web") {
		t.Errorf("crictl stats:\n%s", out)
	}

	if out := c("stopp", podID); out != "Stopped sandbox "+podID {
		t.Errorf("crictl stopp printed %q", out)
	}
	if out := c("ps", "-a", "--pod", podID); strings.Count(out, "Exited") != 2 {
		t.Errorf("crictl ps -a after stopp: want 2 exited containers:\n%s", out)
	}
	if out := c("rmp", podID); out != "Removed sandbox "+podID {
		t.Errorf("crictl rmp printed %q", out)
	}
	if out := c("pods", "-q"); out != "" {
		t.Errorf("crictl pods -q after rmp: %q", out)
	}
	if left := e.leftovers([]string{podID}, []string{web, cat}, nil); len(left) > 0 {
		t.Errorf("left after crictl rmp:\n  %s", strings.Join(left, "\n  "))
	}
}

func asExit(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

var lineRE = regexp.MustCompile(`^line (\d+)$`)

func lineNumber(l string) (int, bool) {
	m := lineRE.FindStringSubmatch(strings.TrimSpace(l))
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}

// bgCmd is a long-running command-line tool (logs -f, attach,
// port-forward) whose output lines the test watches.
type bgCmd struct {
	t     testing.TB
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	mu    sync.Mutex
	seen  []string
	done  chan struct{}
}

func startBG(t testing.TB, name string, args ...string) *bgCmd {
	t.Helper()
	b := &bgCmd{t: t, cmd: exec.Command(name, args...), lines: make(chan string, 1024), done: make(chan struct{})}
	var err error
	if b.stdin, err = b.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	b.cmd.Stdout, b.cmd.Stderr = pw, pw
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
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
			b.seen = append(b.seen, sc.Text())
			b.mu.Unlock()
			select {
			case b.lines <- sc.Text():
			default:
			}
		}
		close(b.lines)
	}()
	t.Cleanup(b.stop)
	return b
}

// waitLine waits for an output line for which match holds.
func (b *bgCmd) waitLine(timeout time.Duration, match func(string) bool) bool {
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-b.lines:
			if !ok {
				return false
			}
			if match(l) {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func (b *bgCmd) output() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.seen, "\n")
}

// stop kills the tool (its own process, by PID) and waits for its output
// to end.
func (b *bgCmd) stop() {
	// An error only says it already ended.
	_ = b.cmd.Process.Kill()
	<-b.done
}
