package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// Docker's restart backoff: 100 ms, doubling per restart up to a minute,
// back to 100 ms once a run lasted 10 s.
const (
	backoffStart = 100 * time.Millisecond
	backoffMax   = time.Minute
	backoffReset = 10 * time.Second
)

// watchExits handles the runtime's exit events until Close, each in a
// goroutine of its own: an exit's handling detaches the container's
// networks (tens of milliseconds of CNI and iptables), and compose stops
// several containers at once, whose stops each wait for their own exit.
func (e *Engine) watchExits(ch <-chan runtime.Event) {
	defer e.bg.Done()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Type != runtime.EventStopped {
				continue
			}
			e.mu.Lock()
			c := e.containers[ev.ContainerID]
			e.mu.Unlock()
			if c == nil {
				continue
			}
			rc, err := e.rt.Container(ev.ContainerID)
			if err != nil || rc.State != runtime.ContainerExited {
				continue
			}
			// Handled once even if waitExit meets the same exit: the
			// record's HandledExit says so.
			e.bg.Add(1)
			go func() {
				defer e.bg.Done()
				e.handleExit(e.bgCtx, c, *rc, exitOptions{})
			}()
		case <-e.closed:
			return
		}
	}
}

type exitOptions struct {
	// atStartup: the exit happened while no engine ran.
	atStartup bool
}

// nextBackoff is the restart manager's delay after a run of d.
func nextBackoff(cur, ran time.Duration) time.Duration {
	if ran >= backoffReset {
		cur = 0
	}
	switch {
	case cur == 0:
		cur = backoffStart
	case cur < backoffMax:
		cur *= 2
	}
	return min(cur, backoffMax)
}

// shouldRestart applies the restart policy to an exit.
func shouldRestart(p container.RestartPolicy, exitCode int, restarts int, stoppedByUser bool) bool {
	if stoppedByUser {
		return false
	}
	switch p.Name {
	case container.RestartPolicyAlways, container.RestartPolicyUnlessStopped:
		return true
	case container.RestartPolicyOnFailure:
		return exitCode != 0 && (p.MaximumRetryCount == 0 || restarts < p.MaximumRetryCount)
	}
	return false
}

// handleExit is what follows a container's exit, once per exit: the
// record, the die event, the network and volumes released, then the
// restart policy (after its backoff) or --rm.
func (e *Engine) handleExit(ctx context.Context, c *ctr, rc runtime.Container, o exitOptions) {
	log := logctx.From(ctx)
	st := steps.Start(ctx, "docker exit")
	e.mu.Lock()
	if c.removed || c.rec.Pending || !rc.FinishedAt.After(c.rec.HandledExit) {
		e.mu.Unlock()
		return
	}
	e.mu.Unlock()
	e.stopHealth(c)
	e.mu.Lock()
	if c.removed || c.rec.Pending || !rc.FinishedAt.After(c.rec.HandledExit) {
		e.mu.Unlock()
		return
	}
	rec := &c.rec
	rec.HandledExit = rc.FinishedAt
	if c.stopping {
		rec.StoppedByUser = true
	}
	ran := rc.FinishedAt.Sub(rc.StartedAt)
	restart := !rec.Removing && shouldRestart(rec.HostConfig.RestartPolicy, int(rc.ExitCode), rec.RestartCount, rec.StoppedByUser)
	var delay time.Duration
	if restart {
		rec.Backoff = nextBackoff(rec.Backoff, ran)
		delay = rec.Backoff
		c.restarting = true
	}
	autoRemove := !restart && rec.HostConfig.AutoRemove
	removing := rec.Removing
	c.exits++
	c.exitCode = int(rc.ExitCode)
	c.notify()
	starting := c.starting
	e.mu.Unlock()
	if starting != nil {
		// The start event comes first, as dockerd orders them.
		select {
		case <-starting:
		case <-time.After(5 * time.Second):
		}
	}
	if err := e.save(c); err != nil {
		log.WarnContext(ctx, "record container exit", "id", rc.ID, "error", err)
	}
	st.Done("save")
	if rc.Reason == runtime.ReasonOOMKilled {
		e.log(c, events.ActionOOM, nil)
	}
	e.log(c, events.ActionDie, map[string]string{
		"exitCode":     strconv.Itoa(int(rc.ExitCode)),
		"execDuration": strconv.Itoa(int(ran.Seconds())),
	})
	// A container on its way out (rm -f, --rm) leaves its networks in
	// the removal, beside the runtime's side of it.
	if !autoRemove && !removing {
		if err := e.detachNetwork(ctx, c); err != nil {
			log.WarnContext(ctx, "detach exited container's network", "id", rc.ID, "error", err)
		}
	}
	e.logs.Stop(rc.ID)
	st.Done("network-detach")
	st.Log("id", rc.ID)
	if !o.atStartup {
		e.unmountVolumes(e.volumeNames(c))
	}
	switch {
	case restart:
		e.scheduleRestart(ctx, c, delay)
	case autoRemove:
		e.bg.Add(1)
		go func() {
			defer e.bg.Done()
			c.op.Lock()
			defer c.op.Unlock()
			if err := e.remove(ctx, c, removeOptions{force: true, volumes: true}); err != nil {
				log.WarnContext(ctx, "remove --rm container", "id", rc.ID, "error", err)
			}
		}()
	}
}

// scheduleRestart starts c again after delay, unless the user acts on it
// first (start, stop, kill, restart, rm cancel the wait).
func (e *Engine) scheduleRestart(ctx context.Context, c *ctr, delay time.Duration) {
	cctx, cancel := context.WithCancel(ctx)
	e.mu.Lock()
	c.cancelRestart = cancel
	e.mu.Unlock()
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		defer cancel()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-cctx.Done():
			return
		case <-e.closed:
			return
		}
		c.op.Lock()
		defer c.op.Unlock()
		e.mu.Lock()
		still := c.restarting && !c.removed && cctx.Err() == nil
		if still {
			c.restarting = false
			c.cancelRestart = nil
			c.rec.RestartCount++
			c.policyStart = true
		}
		e.mu.Unlock()
		if !still {
			return
		}
		err := e.start(ctx, c, startOptions{})
		e.mu.Lock()
		c.policyStart = false
		e.mu.Unlock()
		if err != nil {
			logctx.From(ctx).WarnContext(ctx, "restart container by its policy", "id", c.rec.ID, "error", err)
			e.mu.Lock()
			c.notify()
			e.mu.Unlock()
			_ = e.save(c)
		}
	}()
}

// cancelPolicyRestart stops a pending policy restart; called with c.op
// held.
func (e *Engine) cancelPolicyRestart(c *ctr) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if c.cancelRestart != nil {
		c.cancelRestart()
		c.cancelRestart = nil
	}
	if c.restarting {
		c.restarting = false
		c.notify()
	}
	return nil
}
