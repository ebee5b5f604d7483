// Package health runs Docker healthchecks: a container's HEALTHCHECK
// (from its image or its create flags) probed through exec while the
// container runs, with Docker's state machine (starting, healthy,
// unhealthy; retries; the start period in which failures do not count;
// the start interval) and its log of the last five results.
//
// A Monitor is one running container's loop. It keeps the state in
// memory, as Docker does (it commits health to memory only): a container
// that starts again, or a daemon that restarts, begins at "starting".
package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/moby/moby/api/types/container"
)

// Docker's defaults and limits.
const (
	DefaultInterval      = 30 * time.Second
	DefaultTimeout       = 30 * time.Second
	DefaultStartInterval = 5 * time.Second
	DefaultRetries       = 3
	// MaxLog results are kept.
	MaxLog = 5
	// MaxOutput bytes of a probe's output are kept ("..." marks more).
	MaxOutput = 4096
)

// Command is the command a healthcheck runs in the container: CMD's
// arguments, or CMD-SHELL's string through shell (the container's Shell,
// "/bin/sh -c" when empty). It is nil when there is nothing to run: no
// healthcheck, an empty test, or NONE.
func Command(hc *container.HealthConfig, shell []string) []string {
	if hc == nil || len(hc.Test) < 2 {
		return nil
	}
	switch hc.Test[0] {
	case "CMD":
		return slices.Clone(hc.Test[1:])
	case "CMD-SHELL":
		if len(shell) == 0 {
			shell = []string{"/bin/sh", "-c"}
		}
		return append(slices.Clone(shell), hc.Test[1:]...)
	}
	return nil
}

// Prober runs one probe in the container: cmd with its output to out,
// killed when ctx ends or timeout after it started (the time an exec takes
// to start does not count, as in dockerd); a probe killed by its timeout
// returns an error wrapping ErrTimeout.
type Prober interface {
	Probe(ctx context.Context, cmd []string, timeout time.Duration, out io.Writer) (exitCode int, err error)
}

// ErrTimeout is a probe that ran past its timeout.
var ErrTimeout = errors.New("health check timed out")

// Config is one run of a container's healthchecks.
type Config struct {
	// Cmd is what each probe runs (Command).
	Cmd []string
	// The healthcheck's settings; zero values take Docker's defaults.
	Interval, Timeout, StartPeriod, StartInterval time.Duration
	Retries                                       int
	// StartedAt is when the container started: the start period counts
	// from it.
	StartedAt time.Time
	// Previous is the state the last run left; its log carries over (as
	// Docker keeps it across restarts), its status starts again at
	// "starting", unless Resume.
	Previous *container.Health
	// Resume continues from Previous's status and failing streak: the
	// container was paused, not restarted.
	Resume bool
}

// FromHealthConfig fills Config's settings from hc.
func FromHealthConfig(hc *container.HealthConfig, cmd []string, startedAt time.Time) Config {
	return Config{Cmd: cmd, Interval: hc.Interval, Timeout: hc.Timeout, StartPeriod: hc.StartPeriod, StartInterval: hc.StartInterval, Retries: hc.Retries, StartedAt: startedAt}
}

func (c *Config) defaults() {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.StartInterval <= 0 {
		c.StartInterval = DefaultStartInterval
	}
	if c.Retries <= 0 {
		c.Retries = DefaultRetries
	}
}

// Monitor runs a container's healthchecks until Stop.
type Monitor struct {
	cfg      Config
	prober   Prober
	onChange func(status container.HealthStatus)

	mu    sync.Mutex
	state container.Health

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// Start starts probing: the first probe runs one interval after the
// start (the start interval while in the start period), as Docker's.
// onChange is called, outside any lock, with every new status (not with
// the initial "starting").
func Start(cfg Config, p Prober, onChange func(status container.HealthStatus)) *Monitor {
	cfg.defaults()
	m := &Monitor{cfg: cfg, prober: p, onChange: onChange, stop: make(chan struct{}), done: make(chan struct{})}
	m.state.Status = container.Starting
	if p := cfg.Previous; p != nil {
		m.state.Log = slices.Clone(p.Log)
		if cfg.Resume && p.Status != "" {
			m.state.Status, m.state.FailingStreak = p.Status, p.FailingStreak
		}
	}
	go m.loop()
	return m
}

// Health is a copy of the current state.
func (m *Monitor) Health() container.Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	h := m.state
	h.Log = make([]*container.HealthcheckResult, len(m.state.Log))
	for i, r := range m.state.Log {
		c := *r
		h.Log[i] = &c
	}
	return h
}

// Stop ends the loop, killing a probe under way, and waits for it. The
// state stays as it was.
func (m *Monitor) Stop() {
	m.once.Do(func() { close(m.stop) })
	<-m.done
}

// interval is the wait before the next probe, as Docker's monitor
// computes it: the start interval while starting within the start period,
// never past the period's end.
func (m *Monitor) interval(now time.Time) time.Duration {
	elapsed := now.Sub(m.cfg.StartedAt)
	if elapsed >= m.cfg.StartPeriod {
		return m.cfg.Interval
	}
	if remaining := m.cfg.StartPeriod - elapsed; remaining < m.cfg.Interval {
		return remaining
	}
	m.mu.Lock()
	starting := m.state.Status == container.Starting
	m.mu.Unlock()
	if starting {
		return m.cfg.StartInterval
	}
	return m.cfg.Interval
}

func (m *Monitor) loop() {
	defer close(m.done)
	t := time.NewTimer(m.interval(time.Now()))
	defer t.Stop()
	for {
		select {
		case <-m.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithCancel(context.Background())
		results := make(chan container.HealthcheckResult, 1)
		go func() { results <- m.probe(ctx) }()
		select {
		case <-m.stop:
			cancel()
			<-results
			return
		case r := <-results:
			cancel()
			if status, changed := m.record(r); changed && m.onChange != nil {
				m.onChange(status)
			}
		}
		t.Reset(m.interval(time.Now()))
	}
}

// probe runs one probe, its timeout and output limit applied.
func (m *Monitor) probe(ctx context.Context) container.HealthcheckResult {
	start := time.Now()
	out := &limitedBuffer{}
	code, err := m.prober.Probe(ctx, m.cfg.Cmd, m.cfg.Timeout, out)
	r := container.HealthcheckResult{Start: start, End: time.Now(), ExitCode: code, Output: out.String()}
	switch {
	case errors.Is(err, ErrTimeout):
		r.ExitCode = -1
		r.Output = fmt.Sprintf("Health check exceeded timeout (%v)", m.cfg.Timeout)
		if o := out.String(); o != "" {
			r.Output += ": " + o
		}
	case err != nil:
		r.ExitCode, r.Output = -1, err.Error()
	}
	return r
}

// record applies a result; changed says whether the status moved.
func (m *Monitor) record(r container.HealthcheckResult) (container.HealthStatus, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.state.Status
	Apply(&m.state, r, m.cfg.Retries, m.cfg.StartPeriod, m.cfg.StartedAt)
	return m.state.Status, m.state.Status != old
}

// Apply is Docker's handling of one probe result: it joins the log (the
// last MaxLog kept); success is healthy and resets the failing streak; a
// failure counts towards retries, except while starting within the start
// period; retries failures in a row are unhealthy.
func Apply(h *container.Health, r container.HealthcheckResult, retries int, startPeriod time.Duration, startedAt time.Time) {
	if retries <= 0 {
		retries = DefaultRetries
	}
	if len(h.Log) >= MaxLog {
		h.Log = append(h.Log[len(h.Log)+1-MaxLog:], &r)
	} else {
		h.Log = append(h.Log, &r)
	}
	if r.ExitCode == 0 {
		h.FailingStreak = 0
		h.Status = container.Healthy
		return
	}
	if h.Status == container.Starting && r.Start.Sub(startedAt) < startPeriod {
		return
	}
	h.FailingStreak++
	if h.FailingStreak >= retries {
		h.Status = container.Unhealthy
	}
}

// limitedBuffer keeps the first MaxOutput bytes.
type limitedBuffer struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	truncated bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(MaxOutput-b.buf.Len(), len(p))
	if keep > 0 {
		b.buf.Write(p[:keep])
	}
	if keep < len(p) {
		b.truncated = true
	}
	return len(p), nil
}

func (b *limitedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.truncated {
		return b.buf.String() + "..."
	}
	return b.buf.String()
}
