package e2e

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berth-dev/berth/internal/testimage"
)

// TestDockerHealthcheck: healthchecks from flags and from the image reach
// healthy and unhealthy, docker ps shows it and filters on it, inspect
// has the log, the events say it; timeouts, the start period and NONE.
func TestDockerHealthcheck(t *testing.T) {
	e := newDockerEnv(t)
	health := func(name string) (status string, streak int, log []map[string]any) {
		var h struct {
			Status        string
			FailingStreak int
			Log           []map[string]any
		}
		out := e.cli("inspect", "--format", "{{json .State.Health}}", name)
		if err := json.Unmarshal([]byte(out), &h); err != nil {
			t.Fatalf("inspect health of %s: %q: %v", name, out, err)
		}
		return h.Status, h.FailingStreak, h.Log
	}

	e.cli("run", "-d", "--name", "web", "--health-cmd", "test -f /tmp/ok", "--health-interval", "1s", "--health-retries", "2", e.Image,
		"sh", "-c", "sleep 3; touch /tmp/ok; exec sleep 1000")
	if out := e.cli("ps", "--format", "{{.Status}}", "--filter", "name=web"); !strings.Contains(out, "(health: starting)") {
		t.Errorf("ps right after start: %q", out)
	}
	await(t, "healthy", func() bool { s, _, _ := health("web"); return s == "healthy" })
	if out := e.cli("ps", "--format", "{{.Names}} {{.Status}}"); !regexp.MustCompile(`web Up \S+( \S+)? \(healthy\)`).MatchString(out) {
		t.Errorf("ps of a healthy container: %q", out)
	}
	if got := e.cli("ps", "--filter", "health=healthy", "--format", "{{.Names}}"); got != "web\n" {
		t.Errorf("ps --filter health=healthy = %q", got)
	}
	e.cli("exec", "web", "rm", "/tmp/ok")
	await(t, "unhealthy", func() bool { s, _, _ := health("web"); return s == "unhealthy" })
	status, streak, log := health("web")
	if streak < 2 || len(log) == 0 || len(log) > 5 {
		t.Errorf("unhealthy: %s streak %d, %d log entries", status, streak, len(log))
	}
	if last := log[len(log)-1]; last["ExitCode"] != float64(1) {
		t.Errorf("last result: %v", last)
	}
	if got := e.cli("ps", "--filter", "health=unhealthy", "--format", "{{.Names}} {{.Status}}"); !strings.Contains(got, "web") || !strings.Contains(got, "(unhealthy)") {
		t.Errorf("ps --filter health=unhealthy = %q", got)
	}
	// Five results at most, however many ran.
	await(t, "a full log", func() bool { _, _, l := health("web"); return len(l) == 5 })
	time.Sleep(1500 * time.Millisecond)
	if _, _, l := health("web"); len(l) != 5 {
		t.Errorf("log has %d entries", len(l))
	}
	evs := e.cli("events", "--since", "0", "--until", strconv.FormatInt(time.Now().Unix()+1, 10), "--filter", "container=web", "--filter", "event=health_status", "--format", "{{.Action}}")
	if !strings.Contains(evs, "health_status: healthy\n") || !strings.Contains(evs, "health_status: unhealthy\n") {
		t.Errorf("health events:\n%s", evs)
	}

	// The image's HEALTHCHECK, with a timeout that the probe exceeds.
	base := mustImage(t, testimage.Busybox)
	cf, err := base.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cfg := cf.Config
	cfg.Healthcheck = &v1.HealthConfig{Test: []string{"CMD-SHELL", "echo probing; sleep 5"}, Interval: time.Second, Timeout: 300 * time.Millisecond, Retries: 1}
	withHC, err := mutate.Config(base, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hcImg := push(t, withHC, e.reg.Host+"/berth/busybox:hc").Ref
	e.cli("pull", "-q", hcImg)
	e.cli("run", "-d", "--name", "slow", hcImg, "sleep", "1000")
	await(t, "the timed-out probe to make it unhealthy", func() bool { s, _, _ := health("slow"); return s == "unhealthy" })
	_, _, log = health("slow")
	if out, _ := log[0]["Output"].(string); log[0]["ExitCode"] != float64(-1) || out != "Health check exceeded timeout (300ms): probing\n" {
		t.Errorf("timed-out probe: %v", log[0])
	}
	// The flags override the image's test.
	e.cli("run", "-d", "--name", "overridden", "--health-cmd", "true", hcImg, "sleep", "1000")
	if got := e.cli("inspect", "--format", "{{json .Config.Healthcheck.Test}} {{.Config.Healthcheck.Interval}}", "overridden"); got != `["CMD-SHELL","true"] 1s`+"\n" {
		t.Errorf("merged healthcheck = %q", got)
	}
	await(t, "the overridden check to pass", func() bool { s, _, _ := health("overridden"); return s == "healthy" })

	// --no-healthcheck (NONE): no health at all.
	e.cli("run", "-d", "--name", "none", "--no-healthcheck", hcImg, "sleep", "1000")
	if got := e.cli("inspect", "--format", "{{.State.Health}}", "none"); got != "<nil>\n" {
		t.Errorf("NONE: health %q", got)
	}
	if got := e.cli("ps", "--filter", "health=none", "--format", "{{.Names}}"); !strings.Contains(got, "none") || strings.Contains(got, "web") {
		t.Errorf("ps --filter health=none = %q", got)
	}

	// Within the start period failures do not count.
	e.cli("run", "-d", "--name", "warming", "--health-cmd", "false", "--health-interval", "1s", "--health-start-period", "1m", "--health-start-interval", "500ms", e.Image, "sleep", "1000")
	await(t, "probes in the start period", func() bool { _, _, l := health("warming"); return len(l) >= 3 })
	if s, streak, _ := health("warming"); s != "starting" || streak != 0 {
		t.Errorf("in the start period: %s streak %d", s, streak)
	}

	// Paused: no probe runs; unpaused, they go on from the status it had.
	e.cli("pause", "overridden")
	_, _, before := health("overridden")
	time.Sleep(2500 * time.Millisecond)
	if _, _, after := health("overridden"); len(after) != len(before) || after[len(after)-1]["Start"] != before[len(before)-1]["Start"] {
		t.Errorf("probes ran while paused")
	}
	e.cli("unpause", "overridden")
	if s, _, _ := health("overridden"); s != "healthy" {
		t.Errorf("status after unpause: %s", s)
	}
	await(t, "a probe after unpause", func() bool {
		_, _, after := health("overridden")
		return after[len(after)-1]["Start"] != before[len(before)-1]["Start"]
	})

	// Stopped: the last status stays, no probe runs.
	e.cli("kill", "web")
	await(t, "web to stop", func() bool { return e.cli("inspect", "--format", "{{.State.Running}}", "web") == "false\n" })
	_, _, before = health("web")
	time.Sleep(2 * time.Second)
	if _, _, after := health("web"); len(after) != len(before) || after[len(after)-1]["Start"] != before[len(before)-1]["Start"] {
		t.Errorf("probes ran after the container stopped")
	}

	// Bad input.
	if _, errOut, code := e.cliErr("run", "-d", "--health-interval", "100us", "--health-cmd", "true", e.Image, "true"); code == 0 || !strings.Contains(errOut, "Interval in Healthcheck cannot be less than 1ms") {
		t.Errorf("interval below 1ms: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("run", "-d", "--health-retries", "-1", "--health-cmd", "true", e.Image, "true"); code == 0 || !strings.Contains(errOut, "cannot be negative") {
		t.Errorf("negative retries: exit %d %q", code, errOut)
	}
}
