package health

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
)

func TestCommand(t *testing.T) {
	for _, tc := range []struct {
		hc    *container.HealthConfig
		shell []string
		want  []string
	}{
		{nil, nil, nil},
		{&container.HealthConfig{}, nil, nil},
		{&container.HealthConfig{Test: []string{"NONE"}}, nil, nil},
		{&container.HealthConfig{Test: []string{"CMD"}}, nil, nil},
		{&container.HealthConfig{Test: []string{"CMD", "true", "x"}}, nil, []string{"true", "x"}},
		{&container.HealthConfig{Test: []string{"CMD-SHELL", "exit 1"}}, nil, []string{"/bin/sh", "-c", "exit 1"}},
		{&container.HealthConfig{Test: []string{"CMD-SHELL", "exit 1"}}, []string{"/bin/bash", "-ec"}, []string{"/bin/bash", "-ec", "exit 1"}},
		{&container.HealthConfig{Test: []string{"WHAT", "x"}}, nil, nil},
	} {
		if got := Command(tc.hc, tc.shell); !slices.Equal(got, tc.want) {
			t.Errorf("Command(%+v, %q) = %q, want %q", tc.hc, tc.shell, got, tc.want)
		}
	}
}

// TestApply walks Docker's state machine.
func TestApply(t *testing.T) {
	started := time.Now()
	at := func(d time.Duration, code int) container.HealthcheckResult {
		return container.HealthcheckResult{Start: started.Add(d), End: started.Add(d), ExitCode: code}
	}
	h := container.Health{Status: container.Starting}
	// Failures within the start period do not count.
	Apply(&h, at(time.Second, 1), 2, 5*time.Second, started)
	Apply(&h, at(2*time.Second, 1), 2, 5*time.Second, started)
	if h.Status != container.Starting || h.FailingStreak != 0 {
		t.Fatalf("within the start period: %s %d", h.Status, h.FailingStreak)
	}
	// After it they do; retries (2) failures make it unhealthy.
	Apply(&h, at(6*time.Second, 1), 2, 5*time.Second, started)
	if h.Status != container.Starting || h.FailingStreak != 1 {
		t.Fatalf("first failure after the start period: %s %d", h.Status, h.FailingStreak)
	}
	Apply(&h, at(7*time.Second, 1), 2, 5*time.Second, started)
	if h.Status != container.Unhealthy || h.FailingStreak != 2 {
		t.Fatalf("second failure: %s %d", h.Status, h.FailingStreak)
	}
	// One success is healthy and resets the streak.
	Apply(&h, at(8*time.Second, 0), 2, 5*time.Second, started)
	if h.Status != container.Healthy || h.FailingStreak != 0 {
		t.Fatalf("success: %s %d", h.Status, h.FailingStreak)
	}
	// A healthy container stays healthy until retries failures; a start
	// period no longer protects it, even inside it.
	h2 := container.Health{Status: container.Healthy}
	Apply(&h2, at(time.Second, 1), 0, time.Hour, started)
	Apply(&h2, at(time.Second, 1), 0, time.Hour, started)
	if h2.Status != container.Healthy || h2.FailingStreak != 2 {
		t.Fatalf("healthy, two failures: %s %d", h2.Status, h2.FailingStreak)
	}
	Apply(&h2, at(time.Second, -1), 0, time.Hour, started)
	if h2.Status != container.Unhealthy {
		t.Fatalf("three failures with the default retries: %s", h2.Status)
	}
	// The log keeps the last five.
	Apply(&h, at(9*time.Second, 0), 2, 5*time.Second, started)
	if len(h.Log) != 5 || !h.Log[4].Start.Equal(started.Add(9*time.Second)) || !h.Log[0].Start.Equal(started.Add(2*time.Second)) {
		t.Errorf("log: %d entries", len(h.Log))
	}
}

// script is a Prober answering from a list of exit codes (the last one
// repeats), optionally hanging until its context ends.
type script struct {
	mu    sync.Mutex
	codes []int
	calls int
	hang  bool
	out   string
}

func (s *script) Probe(ctx context.Context, cmd []string, timeout time.Duration, out io.Writer) (int, error) {
	s.mu.Lock()
	i := min(s.calls, len(s.codes)-1)
	s.calls++
	s.mu.Unlock()
	io.WriteString(out, s.out)
	if s.hang {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(timeout):
			return 0, fmt.Errorf("probe: %w", ErrTimeout)
		}
	}
	if s.codes[i] < 0 {
		return 0, fmt.Errorf("exec failed")
	}
	return s.codes[i], nil
}

type changes struct {
	mu  sync.Mutex
	got []container.HealthStatus
	ch  chan struct{}
}

func (c *changes) add(s container.HealthStatus) {
	c.mu.Lock()
	c.got = append(c.got, s)
	c.mu.Unlock()
	select {
	case c.ch <- struct{}{}:
	default:
	}
}

func (c *changes) wait(t *testing.T, n int) []container.HealthStatus {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		c.mu.Lock()
		got := slices.Clone(c.got)
		c.mu.Unlock()
		if len(got) >= n {
			return got
		}
		select {
		case <-c.ch:
		case <-deadline:
			t.Fatalf("status changes: %v, want %d", got, n)
		}
	}
}

func TestMonitor(t *testing.T) {
	p := &script{codes: []int{0, 1, 1, 0}, out: "ok\n"}
	c := &changes{ch: make(chan struct{}, 1)}
	m := Start(Config{Cmd: []string{"x"}, Interval: 10 * time.Millisecond, Retries: 2, StartedAt: time.Now()}, p, c.add)
	got := c.wait(t, 3)
	m.Stop()
	if want := []container.HealthStatus{container.Healthy, container.Unhealthy, container.Healthy}; !slices.Equal(got[:3], want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	h := m.Health()
	if h.Status != container.Healthy || len(h.Log) < 4 || h.Log[0].Output != "ok\n" {
		t.Errorf("health: %+v", h)
	}
	// Stopped: no more probes.
	p.mu.Lock()
	calls := p.calls
	p.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.calls != calls {
		t.Errorf("probes after Stop: %d -> %d", calls, p.calls)
	}
}

func TestMonitorTimeoutAndErrors(t *testing.T) {
	p := &script{hang: true, out: "partial"}
	c := &changes{ch: make(chan struct{}, 1)}
	m := Start(Config{Cmd: []string{"x"}, Interval: 5 * time.Millisecond, Timeout: 20 * time.Millisecond, Retries: 1, StartedAt: time.Now()}, p, c.add)
	c.wait(t, 1)
	m.Stop()
	h := m.Health()
	if h.Status != container.Unhealthy || h.Log[0].ExitCode != -1 || h.Log[0].Output != "Health check exceeded timeout (20ms): partial" {
		t.Errorf("timeout: %+v %+v", h, h.Log[0])
	}

	p = &script{codes: []int{-1}}
	c = &changes{ch: make(chan struct{}, 1)}
	m = Start(Config{Cmd: []string{"x"}, Interval: 5 * time.Millisecond, Retries: 1, StartedAt: time.Now()}, p, c.add)
	c.wait(t, 1)
	m.Stop()
	if h := m.Health(); h.Log[0].ExitCode != -1 || h.Log[0].Output != "exec failed" {
		t.Errorf("exec error: %+v", h.Log[0])
	}
}

// TestMonitorStopKillsProbe: Stop during a probe cancels it and returns.
func TestMonitorStopKillsProbe(t *testing.T) {
	p := &script{hang: true}
	m := Start(Config{Cmd: []string{"x"}, Interval: time.Millisecond, StartedAt: time.Now()}, p, nil)
	time.Sleep(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { m.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop did not return during a probe")
	}
	if h := m.Health(); h.Status != container.Starting {
		t.Errorf("status after a cancelled probe: %s", h.Status)
	}
}

func TestInterval(t *testing.T) {
	now := time.Now()
	m := &Monitor{cfg: Config{Interval: 30 * time.Second, StartInterval: 2 * time.Second, StartPeriod: time.Minute, StartedAt: now}}
	m.state.Status = container.Starting
	if d := m.interval(now.Add(time.Second)); d != 2*time.Second {
		t.Errorf("starting in the start period: %v", d)
	}
	if d := m.interval(now.Add(50 * time.Second)); d != 10*time.Second {
		t.Errorf("near the period's end: %v", d)
	}
	m.state.Status = container.Healthy
	if d := m.interval(now.Add(time.Second)); d != 30*time.Second {
		t.Errorf("healthy in the start period: %v", d)
	}
	if d := m.interval(now.Add(2 * time.Minute)); d != 30*time.Second {
		t.Errorf("after the period: %v", d)
	}
}

func TestLimitedBuffer(t *testing.T) {
	var b limitedBuffer
	b.Write([]byte(strings.Repeat("a", MaxOutput-1)))
	b.Write([]byte("bc"))
	if s := b.String(); len(s) != MaxOutput+3 || !strings.HasSuffix(s, "ab...") {
		t.Errorf("len %d suffix %q", len(s), s[len(s)-5:])
	}
}
