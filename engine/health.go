package engine

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/engine/health"
	"github.com/berth-dev/berth/runtime"
)

// healthChecks are the containers' healthcheck monitors, by container ID,
// and the state each left when it stopped (inspect shows it while the
// container does not run, as dockerd does). Guarded by Engine.mu.
type healthChecks struct {
	running map[string]*health.Monitor
	last    map[string]*container.Health
}

// startHealth starts c's healthchecks if it has any: the state begins at
// "starting", the log of an earlier run carries over.
func (e *Engine) startHealth(c *ctr, startedAt time.Time) {
	e.stopHealth(c)
	e.mu.Lock()
	id, hc, shell := c.rec.ID, c.rec.Config.Healthcheck, c.rec.Config.Shell
	e.mu.Unlock()
	cmd := health.Command(hc, shell)
	if cmd == nil {
		return
	}
	cfg := health.FromHealthConfig(hc, cmd, startedAt)
	e.mu.Lock()
	cfg.Previous = e.health.last[id]
	e.mu.Unlock()
	e.runHealth(c, id, cfg)
}

// runHealth starts a monitor with cfg and registers it as c's, with
// health_status events for every change.
func (e *Engine) runHealth(c *ctr, id string, cfg health.Config) {
	m := health.Start(cfg, probe{e: e, c: c}, func(s container.HealthStatus) {
		e.log(c, events.Action(string(events.ActionHealthStatus)+": "+string(s)), nil)
	})
	e.mu.Lock()
	if e.health.running == nil {
		e.health.running = map[string]*health.Monitor{}
	}
	e.health.running[id] = m
	e.mu.Unlock()
}

// stopHealth stops c's healthchecks, keeping their last state.
func (e *Engine) stopHealth(c *ctr) {
	e.mu.Lock()
	id := c.rec.ID
	m := e.health.running[id]
	delete(e.health.running, id)
	e.mu.Unlock()
	if m == nil {
		return
	}
	m.Stop()
	h := m.Health()
	e.mu.Lock()
	if e.health.last == nil {
		e.health.last = map[string]*container.Health{}
	}
	e.health.last[id] = &h
	e.mu.Unlock()
}

// resumeHealth restarts the healthchecks of a container that was paused,
// from the status it had.
func (e *Engine) resumeHealth(c *ctr) {
	e.mu.Lock()
	id, hc, shell := c.rec.ID, c.rec.Config.Healthcheck, c.rec.Config.Shell
	last := e.health.last[id]
	_, running := e.health.running[id]
	e.mu.Unlock()
	cmd := health.Command(hc, shell)
	if cmd == nil || running {
		return
	}
	rc, err := e.rt.Container(id)
	if err != nil || rc.State != runtime.ContainerRunning {
		return
	}
	cfg := health.FromHealthConfig(hc, cmd, rc.StartedAt)
	cfg.Previous, cfg.Resume = last, true
	e.runHealth(c, id, cfg)
}

// dropHealth forgets a removed container's healthchecks.
func (e *Engine) dropHealth(id string) {
	e.mu.Lock()
	m := e.health.running[id]
	delete(e.health.running, id)
	delete(e.health.last, id)
	e.mu.Unlock()
	if m != nil {
		m.Stop()
	}
}

// stopAllHealth stops every monitor (Close).
func (e *Engine) stopAllHealth() {
	e.mu.Lock()
	ms := e.health.running
	e.health.running = nil
	e.mu.Unlock()
	for _, m := range ms {
		m.Stop()
	}
}

// healthOf is the container's health for inspect and list: nil without a
// healthcheck.
func (e *Engine) healthOf(id string, cfg *container.Config) *container.Health {
	if cfg == nil || health.Command(cfg.Healthcheck, cfg.Shell) == nil {
		return nil
	}
	e.mu.Lock()
	m, last := e.health.running[id], e.health.last[id]
	e.mu.Unlock()
	if m != nil {
		h := m.Health()
		return &h
	}
	if last != nil {
		h := *last
		return &h
	}
	// Never ran since berthd started.
	return &container.Health{Status: container.Starting, Log: []*container.HealthcheckResult{}}
}

// probe runs a container's healthcheck through exec, as dockerd does:
// with the container's user, environment and working directory, its
// output to the result, and the exec events.
type probe struct {
	e *Engine
	c *ctr
}

func (p probe) Probe(ctx context.Context, cmd []string, timeout time.Duration, out io.Writer) (int, error) {
	e, c := p.e, p.c
	execID := newID()
	line := strings.Join(cmd, " ")
	e.log(c, events.Action(string(events.ActionExecCreate)+": "+line), map[string]string{"execID": execID})
	e.log(c, events.Action(string(events.ActionExecStart)+": "+line), map[string]string{"execID": execID})
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timedOut atomic.Bool
	// The timeout counts from the process's start; a start wedged for
	// longer than dockerd's 30 s fails the probe too.
	wedged := time.AfterFunc(probeStartTimeout, cancel)
	defer wedged.Stop()
	var timer *time.Timer
	var mu sync.Mutex
	started := func(int) {
		wedged.Stop()
		mu.Lock()
		timer = time.AfterFunc(timeout, func() { timedOut.Store(true); cancel() })
		mu.Unlock()
	}
	code, err := e.rt.Exec(ctx, c.rec.ID, runtime.ExecOptions{Cmd: cmd, Started: started, Streams: runtime.Streams{Stdout: out, Stderr: out}})
	mu.Lock()
	if timer != nil {
		timer.Stop()
	}
	mu.Unlock()
	if timedOut.Load() {
		err = fmt.Errorf("probe %s: %w", line, health.ErrTimeout)
	}
	if err != nil {
		code = -1
	}
	e.log(c, events.ActionExecDie, map[string]string{"execID": execID, "exitCode": strconv.Itoa(code)})
	return code, err
}

// probeStartTimeout bounds the start of a probe's process (dockerd's).
const probeStartTimeout = 30 * time.Second
