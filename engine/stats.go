package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/engine/stats"
	"github.com/berth-dev/berth/runtime"
)

// statsInterval is dockerd's collection interval.
const statsInterval = time.Second

// StatsOptions are GET stats' query options.
type StatsOptions struct {
	// Stream sends a reading every second until ctx ends.
	Stream bool
	// OneShot answers one reading at once, with no previous one; without
	// it a single reading (Stream false) waits for a second sample so
	// that precpu_stats is filled and the CLI's CPU % is right.
	OneShot bool
}

// Stats reads a container's resource usage in Docker's shape and hands
// each reading to fn. A container that does not run reads as zeros, as in
// dockerd.
func (e *Engine) Stats(ctx context.Context, ref string, o StatsOptions, fn func(container.StatsResponse) error) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	mem, err := stats.MachineMemory()
	if err != nil {
		return err
	}
	e.mu.Lock()
	id, name := c.rec.ID, c.rec.Name
	e.mu.Unlock()
	if !o.Stream && !e.runs(id) {
		return fn(stats.Response(id, name, stats.Sample{}, nil, mem))
	}
	var pre *stats.Sample
	if !o.Stream && !o.OneShot {
		s, err := e.sample(ctx, c)
		if err != nil {
			return err
		}
		pre = &s
		if err := sleep(ctx, statsInterval); err != nil {
			return nil
		}
	}
	for {
		s, err := e.sample(ctx, c)
		if err != nil {
			return err
		}
		e.mu.Lock()
		name = c.rec.Name
		e.mu.Unlock()
		if err := fn(stats.Response(id, name, s, pre, mem)); err != nil || !o.Stream {
			return err
		}
		if s.Container != nil {
			pre = &s
		} else {
			pre = nil
		}
		if err := sleep(ctx, statsInterval); err != nil {
			return nil
		}
	}
}

func (e *Engine) runs(id string) bool {
	rc, err := e.rt.Container(id)
	return err == nil && rc.State == runtime.ContainerRunning
}

// sample reads the container's cgroup, its network namespace and the
// host's CPU counters, close together. A container that does not run (or
// stopped meanwhile) gives an empty sample.
func (e *Engine) sample(ctx context.Context, c *ctr) (stats.Sample, error) {
	e.mu.Lock()
	id, mode := c.rec.ID, c.rec.HostConfig.NetworkMode
	e.mu.Unlock()
	if !e.runs(id) {
		return stats.Sample{}, nil
	}
	cs, err := e.rt.ContainerCgroupStats(ctx, id)
	if err != nil {
		if !e.runs(id) {
			return stats.Sample{}, nil
		}
		return stats.Sample{}, fmt.Errorf("stats of container %s: %w", id, err)
	}
	host, err := stats.ReadHost()
	if err != nil {
		return stats.Sample{}, err
	}
	s := stats.Sample{Container: cs, Host: host}
	// The host's interfaces are not the container's: dockerd reports none
	// with host networking, and a container:<name> network is the other
	// container's sandbox.
	sb := id
	switch classifyNetwork(mode) {
	case netHost:
		sb = ""
	case netContainer:
		if t, err := e.lookup(mode.ConnectedContainer()); err == nil {
			sb = t.rec.ID
		}
	}
	if sb != "" {
		if s.Networks, err = e.rt.SandboxNetworkStats(ctx, sb); err != nil && e.runs(id) {
			return stats.Sample{}, fmt.Errorf("stats of container %s: %w", id, err)
		}
	}
	return s, nil
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
