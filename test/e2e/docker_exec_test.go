package e2e

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestDockerExec: docker exec with its options, under a terminal and
// piped, detached, and the events; the bad inputs docker refuses.
func TestDockerExec(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "-d", "--name", "box", "-e", "FROM_RUN=1", e.Image, "sleep", "1000")

	if got := e.cli("exec", "box", "echo", "hi"); got != "hi\n" {
		t.Errorf("exec echo = %q", got)
	}
	out, errOut, code := e.cliErr("exec", "box", "sh", "-c", "echo out; echo err >&2; exit 7")
	if out != "out\n" || errOut != "err\n" || code != 7 {
		t.Errorf("exec streams: %q %q exit %d", out, errOut, code)
	}
	got := e.cli("exec", "-e", "X=y", "-u", "nobody", "-w", "/tmp", "box", "sh", "-c", `echo "$X $FROM_RUN $(id -u) $(pwd)"`)
	if got != "y 1 65534 /tmp\n" {
		t.Errorf("exec -e -u -w = %q", got)
	}
	// --privileged gives what the daemon has (root's capabilities here).
	status, _ := os.ReadFile("/proc/self/status")
	own := regexp.MustCompile(`CapEff:\s*([0-9a-f]+)`).FindStringSubmatch(string(status))
	if got := e.cli("exec", "--privileged", "box", "sh", "-c", "grep CapEff /proc/self/status"); own == nil || !strings.Contains(got, own[1]) {
		t.Errorf("exec --privileged capabilities: %q, berthd's %q", got, own)
	}
	if got := e.cli("exec", "box", "sh", "-c", "grep CapEff /proc/self/status"); strings.Contains(got, "ffffffffff") {
		t.Errorf("exec without --privileged has every capability: %q", got)
	}
	// stdin, piped.
	if got, code := e.cliIn("line one\nline two\n", "exec", "-i", "box", "sh", "-c", "cat; echo done"); got != "line one\nline two\ndone\n" || code != 0 {
		t.Errorf("exec -i = %q exit %d", got, code)
	}

	// Under a terminal (the CLI inside script's pty).
	out, code = e.tty("", 3*time.Second, "exec", "-it", "box", "sh", "-c", "tty; echo $TERM; stty size; exit 3")
	if code != 3 || !regexp.MustCompile(`/dev/pts/\d+\r\n`).MatchString(out) || !strings.Contains(out, "xterm\r\n") {
		t.Errorf("exec -it: exit %d, terminal:\n%q", code, out)
	}
	// The terminal shows the output and nothing else, with either CLI:
	// no NUL or its echo ^@ (dockerd's raw stream has no stray byte).
	_, berthBin := binaries(t)
	berth := *e
	berth.bin, berth.env = berthBin, append(append([]string{}, e.env...), "BERTH_HOST=unix://"+e.d.DockerSock)
	for _, cli := range []*dockerEnv{e, &berth} {
		if out, code := cli.tty("", 2*time.Second, "exec", "-it", "box", "echo", "hi"); out != "hi\r\n" || code != 0 {
			t.Errorf("%s exec -it box echo hi: exit %d, terminal %q, want exactly \"hi\\r\\n\"", cli.bin, code, out)
		}
	}
	out, code = e.tty("echo typed-$((40+2))\nexit 5\n", 5*time.Second, "exec", "-it", "box", "sh")
	if code != 5 || !strings.Contains(out, "typed-42") {
		t.Errorf("interactive exec: exit %d, terminal:\n%q", code, out)
	}

	// Detached: the process runs on after the CLI returned.
	e.cli("exec", "-d", "box", "sh", "-c", "sleep 1; touch /tmp/detached")
	await(t, "the detached exec's file", func() bool {
		_, _, code := e.cliErr("exec", "box", "test", "-f", "/tmp/detached")
		return code == 0
	})

	// A command that does not exist: docker's exit code 127 (or 126).
	_, errOut, code = e.cliErr("exec", "box", "/no/such/binary")
	if code != 127 && code != 126 {
		t.Errorf("exec of a missing binary: exit %d, stderr %q", code, errOut)
	}

	// The API's view: inspect of a finished exec, and the events.
	var created struct{ Id string }
	r := e.d.rawRequest(t, "POST", "/containers/box/exec", `{"Cmd":["sh","-c","exit 9"],"AttachStdout":true}`)
	if r.status != 201 || json.Unmarshal([]byte(r.body), &created) != nil || created.Id == "" {
		t.Fatalf("exec create: %d %s", r.status, r.body)
	}
	r = e.d.rawRequest(t, "POST", "/exec/"+created.Id+"/start", `{"Detach":true}`)
	if r.status != 200 {
		t.Fatalf("exec start detached: %d %s", r.status, r.body)
	}
	await(t, "the exec's exit code", func() bool {
		r := e.d.rawRequest(t, "GET", "/exec/"+created.Id+"/json", "")
		return strings.Contains(r.body, `"ExitCode":9`) && strings.Contains(r.body, `"Running":false`)
	})
	r = e.d.rawRequest(t, "POST", "/exec/"+created.Id+"/start", `{"Detach":true}`)
	if r.status != 409 || !strings.Contains(r.body, "has already run") {
		t.Errorf("second start: %d %s", r.status, r.body)
	}
	evs := e.cli("events", "--since", "0", "--until", strconv.FormatInt(time.Now().Unix()+1, 10), "--filter", "container=box", "--format", "{{.Action}}")
	for _, want := range []string{"exec_create: sh -c exit 9", "exec_start: sh -c exit 9", "exec_die"} {
		if !strings.Contains(evs, want) {
			t.Errorf("events lack %q:\n%s", want, evs)
		}
	}

	// Bad input.
	if r := e.d.rawRequest(t, "GET", "/exec/nosuchexec/json", ""); r.status != 404 || !strings.Contains(r.body, "No such exec instance") {
		t.Errorf("inspect of an unknown exec: %d %s", r.status, r.body)
	}
	if r := e.d.rawRequest(t, "POST", "/containers/box/exec", `{"Cmd":[]}`); r.status != 400 || !strings.Contains(r.body, "No exec command specified") {
		t.Errorf("exec without a command: %d %s", r.status, r.body)
	}
	if _, errOut, code := e.cliErr("exec", "nosuchbox", "true"); code == 0 || !strings.Contains(errOut, "No such container: nosuchbox") {
		t.Errorf("exec in a missing container: exit %d, %q", code, errOut)
	}
	e.cli("run", "--name", "done", e.Image, "true")
	if _, errOut, code := e.cliErr("exec", "done", "true"); code == 0 || !strings.Contains(errOut, "is not running") {
		t.Errorf("exec in a stopped container: exit %d, %q", code, errOut)
	}
	e.cli("pause", "box")
	if _, errOut, code := e.cliErr("exec", "box", "true"); code == 0 || !strings.Contains(errOut, "is paused") {
		t.Errorf("exec in a paused container: exit %d, %q", code, errOut)
	}
	e.cli("unpause", "box")
}
