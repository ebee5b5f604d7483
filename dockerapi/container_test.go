package dockerapi

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/engine"
)

// TestDecodeCreateBody: the create body decodes strictly, with dockerd's
// "invalid JSON" messages, and the legacy fields older clients send pass.
func TestDecodeCreateBody(t *testing.T) {
	for _, c := range []struct {
		body string
		want string // error substring; "" is success
	}{
		{`{"Image":"busybox","Cmd":["sh"],"HostConfig":{"Binds":["/a:/b"]}}`, ""},
		{`{"Image":"busybox","MacAddress":"02:42:ac:11:00:02","HostConfig":{"KernelMemory":0,"KernelMemoryTCP":0}}`, ""},
		{`{"Image":`, "invalid JSON: unexpected EOF"},
		{`{"Image":"x"} trailing`, "unexpected content after JSON"},
		{`{"Image":"x","Bogus":true}`, `invalid JSON: json: unknown field "Bogus"`},
		{`{"Image":"x","HostConfig":{"Bogus":1}}`, `invalid JSON: json: unknown field "Bogus"`},
		{`{"Image":"x","Cmd":"sh"}`, "invalid JSON: json: cannot unmarshal string into Go struct field"},
		{`{"Image":"x","HostConfig":{"Memory":"lots"}}`, "invalid JSON: json: cannot unmarshal string"},
		{`[1,2]`, "invalid JSON: json: cannot unmarshal array"},
		{``, "empty request body"},
	} {
		r := httptest.NewRequest("POST", "/containers/create", strings.NewReader(c.body))
		var b createBody
		err := decodeStrict(r, &b)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.body, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want %q", c.body, err, c.want)
		case c.want != "" && c.body != "" && !errdefs.IsInvalidArgument(err):
			t.Errorf("%s: %v is not a 400", c.body, err)
		}
	}
}

func TestBoolValue(t *testing.T) {
	for q, want := range map[string]bool{
		"": false, "x=": false, "x=0": false, "x=false": false, "x=False": false, "x=FALSE": false, "x=no": false, "x=none": false,
		"x=1": true, "x=true": true, "x=True": true, "x=yes": true, "x=on": true,
	} {
		r := httptest.NewRequest("GET", "/?"+q, nil)
		if got := boolValue(r, "x"); got != want {
			t.Errorf("boolValue(%q) = %v", q, got)
		}
	}
	r := httptest.NewRequest("GET", "/?stream=False", nil)
	if boolValueOr(r, "stream", true) || !boolValueOr(r, "absent", true) {
		t.Error("boolValueOr")
	}
}

func TestParseTimestamp(t *testing.T) {
	for in, want := range map[string]time.Time{
		"1700000000":           time.Unix(1700000000, 0),
		"1700000000.5":         time.Unix(1700000000, 500000000),
		"1700000000.000000001": time.Unix(1700000000, 1),
		"2023-11-14T22:13:20Z": time.Unix(1700000000, 0),
		"":                     {},
	} {
		got, err := apiTime(in)
		if err != nil || !got.Equal(want) {
			t.Errorf("apiTime(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := apiTime("yesterday"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad timestamp: %v", err)
	}
}

// TestStdWriter: the framing is docker's stdcopy, which the client
// library splits back into the two streams.
func TestStdWriter(t *testing.T) {
	var buf bytes.Buffer
	out, errw := &stdWriter{w: &buf, stream: streamStdout}, &stdWriter{w: &buf, stream: streamStderr}
	io.WriteString(out, "hello ")
	io.WriteString(errw, "oops\n")
	io.WriteString(out, "world\n")
	out.Write(nil)
	var so, se bytes.Buffer
	if _, err := stdcopy.StdCopy(&so, &se, &buf); err != nil {
		t.Fatal(err)
	}
	if so.String() != "hello world\n" || se.String() != "oops\n" {
		t.Errorf("demuxed %q %q", so.String(), se.String())
	}
}

// TestHijackDrainsInput: a session that ends while the client is still
// sending input is closed without resetting the connection (the docker
// CLI reports a reset as an error): the client reads the stream's end
// and can still finish its writes.
func TestHijackDrainsInput(t *testing.T) {
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, err := hijack(w, r, true)
		if err != nil {
			t.Error(err)
			return
		}
		io.WriteString(h, "bye\n")
		h.close()
		close(done)
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "POST /containers/x/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\nUpgrade: tcp\r\nConnection: Upgrade\r\n\r\n")
	br := bufio.NewReader(conn)
	status, _ := br.ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 101 UPGRADED") {
		t.Fatalf("status line %q", status)
	}
	// Keep sending input while the server finishes.
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 20 {
		if _, err := conn.Write(chunk); err != nil {
			if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
				t.Fatalf("write after the session ended: %v", err)
			}
			break
		}
	}
	conn.(*net.TCPConn).CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("read to the end: %v", err)
	}
	if !strings.Contains(string(rest), "Content-Type: application/vnd.docker.raw-stream") || !strings.HasSuffix(string(rest), "bye\n") {
		t.Errorf("stream %q", rest)
	}
	<-done
}

func TestStatusString(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		st   engine.State
		want string
	}{
		{engine.State{Status: container.StateCreated}, "Created"},
		{engine.State{Status: container.StateRunning, Running: true, StartedAt: now.Add(-3 * time.Minute)}, "Up 3 minutes"},
		{engine.State{Status: container.StatePaused, Running: true, Paused: true, StartedAt: now.Add(-time.Hour)}, "Up About an hour (Paused)"},
		{engine.State{Status: container.StateExited, ExitCode: 137, StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-2 * time.Second)}, "Exited (137) 2 seconds ago"},
		{engine.State{Status: container.StateRestarting, Running: true, Restarting: true, ExitCode: 1, StartedAt: now.Add(-time.Hour), FinishedAt: now.Add(-time.Second)}, "Restarting (1) 1 second ago"},
		{engine.State{Status: container.StateRemoving, StartedAt: now}, "Removal In Progress"},
		{engine.State{Status: container.StateDead, Dead: true, StartedAt: now}, "Dead"},
	} {
		if got := statusString(c.st, now); got != c.want {
			t.Errorf("%+v: %q, want %q", c.st, got, c.want)
		}
	}
	if got := commandLine("sh", []string{"-c", "echo hi"}); got != "sh -c 'echo hi'" {
		t.Errorf("command line %q", got)
	}
}

// TestContainerEndpointsWithoutEngine: a berthd without an engine answers
// the container and volume endpoints 501, not 404.
func TestContainerEndpointsWithoutEngine(t *testing.T) {
	srv, _ := newTestServer(t, dockerapitest.New())
	for _, p := range []string{"/containers/json", "/v1.45/containers/x/logs", "/volumes", "/events"} {
		resp, body := do(t, srv, "GET", p, nil)
		if resp.StatusCode != http.StatusNotImplemented {
			t.Errorf("GET %s: %d %s", p, resp.StatusCode, body)
		}
	}
}
