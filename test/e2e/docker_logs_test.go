package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Graylog2/go-gelf/gelf"

	"github.com/berth-dev/berth/internal/logtest"
)

// The log drivers through the stock docker CLI: rotation options,
// docker logs (tail, since/until, follow across rotation), dockerd's
// errors, and the remote drivers with receivers on 127.0.0.1 that decode
// what arrives with the wire formats' own libraries.

func linesFrom(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	return b.String()
}

const countTo = `i=0; while [ $i -lt %N ]; do echo line $i; i=$((i+1)); done`

func counter(n int) string { return strings.ReplaceAll(countTo, "%N", strconv.Itoa(n)) }

func TestDockerLogRotation(t *testing.T) {
	e := newDockerEnv(t)
	// The daemon's default (berthd's [logging]): json-file, rotated.
	e.cli("run", "--name", "dflt", e.Image, "true")
	if got := e.cli("inspect", "--format", "{{json .HostConfig.LogConfig}}", "dflt"); got != `{"Type":"json-file","Config":{"max-file":"5","max-size":"10m"}}`+"\n" {
		t.Errorf("default log config %s", got)
	}

	e.cli("run", "-d", "--name", "rot", "--log-opt", "max-size=2k", "--log-opt", "max-file=3", "--log-opt", "compress=true", e.Image, "sh", "-c", counter(1000))
	e.cli("wait", "rot")
	if got := e.cli("inspect", "--format", "{{json .HostConfig.LogConfig}}", "rot"); got != `{"Type":"json-file","Config":{"compress":"true","max-file":"3","max-size":"2k"}}`+"\n" {
		t.Errorf("log config %s", got)
	}
	logPath := strings.TrimSpace(e.cli("inspect", "--format", "{{.LogPath}}", "rot"))
	await(t, "the rotated files compressed", func() bool {
		return fileExists(logPath+".1.gz") && fileExists(logPath+".2.gz") && !fileExists(logPath+".1")
	})
	if fileExists(logPath+".3.gz") || fileExists(logPath+".3") {
		t.Errorf("more than max-file=3 files kept")
	}
	if st, err := os.Stat(logPath); err != nil || st.Size() > 2000+100 {
		t.Errorf("current file: %v, %d bytes with max-size=2k", err, st.Size())
	}
	out := e.cli("logs", "rot")
	m := regexp.MustCompile(`^line (\d+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("logs: %.80q", out)
	}
	first, _ := strconv.Atoi(m[1])
	if first == 0 || out != linesFrom(first, 1000) {
		t.Errorf("logs of a rotated log: from line %d, %d bytes; want a gapless tail to line 999", first, len(out))
	}
	if got := e.cli("logs", "--tail", "3", "rot"); got != linesFrom(997, 1000) {
		t.Errorf("logs --tail 3: %q", got)
	}
	// Each line is docker's JSON on disk: tools that read docker's files
	// read ours.
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	last := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	var rec struct {
		Log    string    `json:"log"`
		Stream string    `json:"stream"`
		Time   time.Time `json:"time"`
	}
	if err := json.Unmarshal(last[len(last)-1], &rec); err != nil || rec.Log != "line 999\n" || rec.Stream != "stdout" || rec.Time.IsZero() {
		t.Errorf("last line on disk %q: %+v %v", last[len(last)-1], rec, err)
	}
}

// TestDockerLogsFollow: docker logs -f follows across many rotations,
// every line once and in order, and returns when the container exits.
func TestDockerLogsFollow(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "-d", "--name", "fol", "--log-opt", "max-size=4k", "--log-opt", "max-file=100", e.Image,
		"sh", "-c", "sleep 1; "+counter(3000))
	done := make(chan string, 1)
	go func() { done <- e.cli("logs", "-f", "fol") }()
	select {
	case out := <-done:
		if out != linesFrom(0, 3000) {
			t.Errorf("logs -f: %d bytes, want %d (lines 0..2999 once each); %.60q", len(out), len(linesFrom(0, 3000)), out)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("logs -f did not return after the container exited")
	}
	files, _ := filepath.Glob(strings.TrimSpace(e.cli("inspect", "--format", "{{.LogPath}}", "fol")) + ".*")
	if len(files) < 10 {
		t.Errorf("%d rotated files: rotation not exercised", len(files))
	}
}

func TestDockerLogsLocalSinceUntil(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "--name", "loc", "--log-driver", "local", e.Image, "sh", "-c", "echo a; echo err >&2; sleep 1.2; echo b; sleep 1.2; echo c")
	if out, errOut, _ := e.cliErr("logs", "loc"); out != "a\nb\nc\n" || errOut != "err\n" {
		t.Errorf("logs of local: %q %q", out, errOut)
	}
	if got := e.cli("inspect", "--format", "{{.LogPath}}", "loc"); got != "\n" {
		t.Errorf("LogPath of local %q, want none as dockerd", got)
	}
	ts := map[string]time.Time{}
	for _, l := range strings.Split(strings.TrimSpace(e.cli("logs", "--timestamps", "loc")), "\n") {
		stamp, text, _ := strings.Cut(l, " ")
		t0, err := time.Parse(time.RFC3339Nano, stamp)
		if err != nil {
			t.Fatalf("timestamp of %q: %v", l, err)
		}
		ts[text] = t0
	}
	since, until := ts["b"].Format(time.RFC3339Nano), ts["b"].Add(500*time.Millisecond).Format(time.RFC3339Nano)
	if got := e.cli("logs", "--since", since, "--until", until, "loc"); got != "b\n" {
		t.Errorf("logs --since b --until b+0.5s: %q", got)
	}
}

func TestDockerLogDriverErrors(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "--name", "quiet", "--log-driver", "none", e.Image, "echo", "hi")
	if _, errOut, code := e.cliErr("logs", "quiet"); code == 0 || strings.TrimSpace(errOut) != "Error response from daemon: configured logging driver does not support reading" {
		t.Errorf("logs with driver none: %d %q", code, errOut)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-opt", "foo=bar"}, "unknown log opt 'foo' for json-file log driver"},
		{[]string{"--log-driver", "syslog"}, "logger: no log driver named 'syslog' is registered"},
		{[]string{"--log-driver", "gelf"}, "gelf-address is a required parameter"},
		{[]string{"--log-opt", "mode=sometimes"}, "logger: logging mode not supported: sometimes"},
		{[]string{"--log-driver", "local", "--log-opt", "max-file=1"}, "compression cannot be enabled when max file count is 1"},
	} {
		args := append(append([]string{"run", "--rm"}, tc.args...), e.Image, "true")
		if _, errOut, code := e.cliErr(args...); code != 125 || !strings.Contains(errOut, tc.want) {
			t.Errorf("run %v: %d %q, want 125 and %q", tc.args, code, errOut, tc.want)
		}
	}
}

// TestDockerRemoteLogDrivers: gelf (UDP) and fluentd receive every line
// as dockerd sends it; docker logs reads the local cache, unless it is
// disabled.
func TestDockerRemoteLogDrivers(t *testing.T) {
	e := newDockerEnv(t)

	gelfAddr, msgs := logtest.GelfUDP(t)
	e.cli("run", "--name", "gl", "--log-driver", "gelf", "--log-opt", "gelf-address=udp://"+gelfAddr, "--log-opt", "tag={{.Name}}",
		e.Image, "sh", "-c", "echo one; sleep 0.2; echo two >&2")
	for i, want := range []struct {
		short string
		level int32
	}{{"one", gelf.LOG_INFO}, {"two", gelf.LOG_ERR}} {
		select {
		case m := <-msgs:
			if m.Short != want.short || m.Level != want.level || m.Extra["_container_name"] != "gl" || m.Extra["_tag"] != "gl" {
				t.Errorf("gelf message %d: %q level %d extra %v", i, m.Short, m.Level, m.Extra)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("gelf message %d not received", i)
		}
	}
	if out, errOut, _ := e.cliErr("logs", "gl"); out != "one\n" || errOut != "two\n" {
		t.Errorf("logs of gelf (dual logging): %q %q", out, errOut)
	}

	fl := logtest.NewFluentd(t, "127.0.0.1:0", false)
	e.cli("run", "--name", "fl", "--log-driver", "fluentd", "--log-opt", "fluentd-address="+fl.Addr(), "--log-opt", "tag=docker.{{.Name}}",
		e.Image, "sh", "-c", "echo hello fluentd")
	select {
	case m := <-fl.Events:
		if rec := m.Record; m.Tag != "docker.fl" || rec["log"] != "hello fluentd" || rec["source"] != "stdout" || rec["container_name"] != "/fl" {
			t.Errorf("fluentd event: tag %q record %v", m.Tag, rec)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("fluentd event not received")
	}
	e.cli("run", "--name", "nocache", "--log-driver", "fluentd", "--log-opt", "fluentd-address="+fl.Addr(), "--log-opt", "cache-disabled=true",
		e.Image, "echo", "x")
	if _, errOut, code := e.cliErr("logs", "nocache"); code == 0 || !strings.Contains(errOut, "configured logging driver does not support reading") {
		t.Errorf("logs with cache-disabled: %d %q", code, errOut)
	}
}
