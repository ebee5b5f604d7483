package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// ErrNotModified is Start's answer for a container that runs already
// (Docker's 304).
var ErrNotModified = fmt.Errorf("container already started: %w", errdefs.ErrAlreadyExists)

// Start runs a created or exited container. The user's start resets the
// restart count and the "stopped by the user" flag, as in Docker.
func (e *Engine) Start(ctx context.Context, ref string) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	c.op.Lock()
	defer c.op.Unlock()
	if err := e.cancelPolicyRestart(c); err != nil {
		return err
	}
	return e.start(ctx, c, startOptions{byUser: true})
}

type startOptions struct {
	// byUser: the user asked (not a restart policy).
	byUser bool
}

// start runs c; called with c.op held.
func (e *Engine) start(ctx context.Context, c *ctr, o startOptions) (retErr error) {
	e.mu.Lock()
	id, removed := c.rec.ID, c.removed || c.rec.Removing
	e.mu.Unlock()
	if removed {
		return noSuchContainer(id)
	}
	defer func() {
		if retErr != nil {
			msg := retErr.Error()
			if err := e.update(c, func(r *record) { r.StartError = msg }); err != nil {
				logctx.From(ctx).WarnContext(ctx, "record a failed start", "id", id, "error", err)
			}
		}
	}()
	st := steps.Start(ctx, "docker start")
	defer st.Log("id", id)
	if err := e.rebuildIfLost(ctx, c); err != nil {
		return err
	}
	rc, err := e.rt.Container(id)
	if err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	switch {
	case rc.Paused:
		return errdefs.ErrConflict.WithMessage("cannot start a paused container, try unpause instead")
	case rc.State == runtime.ContainerRunning:
		return ErrNotModified
	case rc.State == runtime.ContainerExited:
		if err := e.rt.RecreateContainer(ctx, id); err != nil {
			return fmt.Errorf("start container %s: %w", id, err)
		}
	case rc.State != runtime.ContainerCreated:
		return fmt.Errorf("start container %s: it is %s: %w", id, rc.State, errdefs.ErrFailedPrecondition)
	}
	// Created by now (recreated, or rebuilt after a reboot from the
	// runtime's record): an update made while it was stopped applies.
	if err := e.applyPendingResources(ctx, c); err != nil {
		return err
	}
	st.Done("recreate")
	if err := e.checkNetworkTarget(c); err != nil {
		return err
	}
	mounted, err := e.mountVolumes(c)
	if err != nil {
		return err
	}
	if err := e.attachNetwork(ctx, c); err != nil {
		e.unmountVolumes(mounted)
		return err
	}
	st.Done("network")
	// Attach sessions waiting for this run get its streams before it
	// writes anything.
	e.connectAttachers(ctx, c)
	st.Done("attachers")
	// Recorded before the process runs: its exit, which may come at
	// once, is judged by the policy with these.
	if err := e.update(c, func(r *record) {
		r.StartedBefore = true
		r.StartError = ""
		if o.byUser {
			r.RestartCount = 0
			r.StoppedByUser = false
			r.Backoff = 0
		}
	}); err != nil {
		logctx.From(ctx).WarnContext(ctx, "record container start", "id", id, "error", err)
	}
	started := make(chan struct{})
	e.mu.Lock()
	c.startedAt = time.Now()
	// An exit at once waits with its die event until start is told.
	c.starting = started
	e.mu.Unlock()
	defer close(started)
	st.Done("save")
	if err := e.rt.StartContainer(ctx, id); err != nil {
		e.unmountVolumes(mounted)
		_ = e.detachNetwork(context.WithoutCancel(ctx), c)
		return fmt.Errorf("start container %s: %w", id, err)
	}
	st.Done("runtime-start")
	e.touch(c)
	e.mu.Lock()
	lc := logContainer(e.containerDir(id), c.rec)
	e.mu.Unlock()
	if err := e.logs.Start(lc); err != nil {
		logctx.From(ctx).WarnContext(ctx, "forward container log", "id", id, "error", err)
	}
	e.log(c, events.ActionStart, nil)
	startedAt := time.Now()
	if rc, err := e.rt.Container(id); err == nil {
		startedAt = rc.StartedAt
	}
	e.startHealth(c, startedAt)
	return nil
}

// checkNetworkTarget refuses to start a container whose network namespace
// is another's that does not run.
func (e *Engine) checkNetworkTarget(c *ctr) error {
	e.mu.Lock()
	mode := c.rec.HostConfig.NetworkMode
	e.mu.Unlock()
	if !mode.IsContainer() {
		return nil
	}
	t, err := e.lookup(mode.ConnectedContainer())
	if err != nil {
		return err
	}
	rc, err := e.rt.Container(t.rec.ID)
	if err != nil || rc.State != runtime.ContainerRunning {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot join network namespace of a non running container: %s", mode.ConnectedContainer()))
	}
	return nil
}

// mountVolumes mounts the devices of volumes created with mount options;
// it returns the volumes it mounted.
func (e *Engine) mountVolumes(c *ctr) ([]string, error) {
	e.mu.Lock()
	mps := c.rec.clone().Mounts
	e.mu.Unlock()
	var done []string
	for _, mp := range mps {
		if mp.Type != mount.TypeVolume {
			continue
		}
		if _, err := e.volumes.Mount(mp.Name); err != nil {
			e.unmountVolumes(done)
			return nil, err
		}
		done = append(done, mp.Name)
	}
	return done, nil
}

func (e *Engine) unmountVolumes(names []string) {
	for _, n := range names {
		_ = e.volumes.Unmount(n)
	}
}

func (e *Engine) volumeNames(c *ctr) []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, mp := range c.rec.Mounts {
		if mp.Type == mount.TypeVolume {
			out = append(out, mp.Name)
		}
	}
	return out
}

// attachNetwork connects the container to its networks (every mode but
// container:, whose namespace is another's) and has the network manager
// write its /etc/hosts and /etc/resolv.conf.
func (e *Engine) attachNetwork(ctx context.Context, c *ctr) error {
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	if e.net == nil || classifyNetwork(rec.HostConfig.NetworkMode) == netContainer {
		return nil
	}
	sb, err := e.rt.Sandbox(rec.ID)
	if err != nil {
		return fmt.Errorf("start container %s: %w", rec.ID, err)
	}
	_, err = e.net.Attach(ctx, network.AttachRequest{
		ID: rec.ID, NetNS: sb.NetNSPath, HostsPath: rec.HostsPath, ResolvConfPath: rec.ResolvConfPath,
	})
	if errdefs.IsFailedPrecondition(err) {
		// Attached already: by the creation (earlyAttachable), in this
		// sandbox's namespace.
		if ns, serr := e.net.Settings(rec.ID); serr == nil && ns.SandboxKey == sb.NetNSPath {
			return nil
		}
	}
	return err
}

// detachNetwork releases the container's endpoints (its exit, a removal).
func (e *Engine) detachNetwork(ctx context.Context, c *ctr) error {
	e.mu.Lock()
	id, mode := c.rec.ID, c.rec.HostConfig.NetworkMode
	e.mu.Unlock()
	if e.net == nil || classifyNetwork(mode) == netContainer {
		return nil
	}
	return e.net.Detach(ctx, id)
}
