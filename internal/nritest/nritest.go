// Package nritest runs the test NRI plugin (./plugin) as a real process
// on a real NRI socket and reads what it was told.
package nritest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berth-dev/berth/internal/testutil"
)

// Event is one event the plugin received (one line of its events file).
type Event struct {
	Event       string            `json:"event"`
	Pod         string            `json:"pod,omitempty"`
	PodName     string            `json:"podName,omitempty"`
	Container   string            `json:"container,omitempty"`
	Name        string            `json:"name,omitempty"`
	State       string            `json:"state,omitempty"`
	Env         []string          `json:"env,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	IPs         []string          `json:"ips,omitempty"`
	Pods        []string          `json:"pods,omitempty"`
	Containers  []string          `json:"containers,omitempty"`
}

// Build builds the plugin into a temp dir of t and returns its path.
func Build(t testing.TB) string {
	t.Helper()
	gobin := testutil.LookPath(t, "go", "the go toolchain builds the test NRI plugin")
	bin := filepath.Join(t.TempDir(), "nri-test-plugin")
	cmd := exec.Command(gobin, "build", "-o", bin, "github.com/berth-dev/berth/internal/nritest/plugin")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the test NRI plugin: %v\n%s", err, out)
	}
	return bin
}

// Plugin is a running test plugin.
type Plugin struct {
	t      testing.TB
	events string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs the plugin at bin against socket with args (see ./plugin);
// the test's cleanup kills it if it still runs.
func Start(t testing.TB, bin, socket string, args ...string) *Plugin {
	t.Helper()
	dir := t.TempDir()
	p := &Plugin{t: t, events: filepath.Join(dir, "events.jsonl"), exited: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-socket", socket, "-events", p.events}, args...)...)
	var stderr bytes.Buffer
	p.cmd.Stderr = &stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start the test NRI plugin: %v", err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("test NRI plugin %v stderr:\n%s", args, stderr.String())
		}
	})
	return p
}

// Events returns what the plugin was told so far.
func (p *Plugin) Events() []Event {
	p.t.Helper()
	b, err := os.ReadFile(p.events)
	if err != nil && !os.IsNotExist(err) {
		p.t.Fatal(err)
	}
	var out []Event
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			p.t.Fatalf("events file line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// WaitFor waits up to 30 s for an event named name that match accepts (nil
// accepts any) and returns it.
func (p *Plugin) WaitFor(name string, match func(Event) bool) Event {
	p.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		for _, e := range p.Events() {
			if e.Event == name && (match == nil || match(e)) {
				return e
			}
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("the test NRI plugin got no %s event in 30 s; it got %+v", name, p.Events())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Exited reports whether the plugin process ended.
func (p *Plugin) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// WaitExit waits up to timeout for the plugin process to end and reports
// whether it did.
func (p *Plugin) WaitExit(timeout time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Kill ends the plugin process.
func (p *Plugin) Kill() {
	if !p.Exited() {
		p.cmd.Process.Kill()
		<-p.exited
	}
}
