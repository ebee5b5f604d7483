package engine

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// Force kills a running container first.
	Force bool
	// Volumes removes its anonymous volumes too.
	Volumes bool
}

type removeOptions struct {
	force   bool
	volumes bool
}

// Remove deletes the container: its runtime sandbox, writable layer, log,
// record and name, and with Volumes its anonymous volumes. A running
// container needs Force.
func (e *Engine) Remove(ctx context.Context, ref string, o RemoveOptions) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	e.mu.Lock()
	removing := c.rec.Removing
	e.mu.Unlock()
	if removing {
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("removal of container %s is already in progress", ref))
	}
	c.op.Lock()
	defer c.op.Unlock()
	if c.removed {
		return noSuchContainer(ref)
	}
	return e.remove(ctx, c, removeOptions{force: o.Force, volumes: o.Volumes})
}

// remove is Remove with c.op held.
func (e *Engine) remove(ctx context.Context, c *ctr, o removeOptions) error {
	if c.removed {
		return nil
	}
	if err := e.cancelPolicyRestart(c); err != nil {
		return err
	}
	e.mu.Lock()
	id, name := c.rec.ID, c.rec.Name
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err == nil && rc.State == runtime.ContainerRunning && !o.force {
		state := "running"
		if rc.Paused {
			state = "paused"
		}
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("cannot remove container %q: container is %s: stop the container before removing or force remove", "/"+name, state))
	}
	// From here the removal is finished even after a crash.
	if err := e.update(c, func(r *record) { r.Removing = true; r.RemoveVolumes = o.volumes }); err != nil {
		return err
	}
	if err == nil && rc.State == runtime.ContainerRunning {
		before := e.markStopping(c)
		if err := e.signal(ctx, c, syscall.SIGKILL); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
		if err := e.waitExit(ctx, c, before, 0); err != nil {
			return fmt.Errorf("remove container %s: %w", id, err)
		}
	}
	return e.finishRemove(ctx, c, o)
}

// finishRemove releases everything of a container marked Removing; each
// step tolerates what is gone already, so a crash half-way is finished by
// the next Open.
func (e *Engine) finishRemove(ctx context.Context, c *ctr, o removeOptions) error {
	e.mu.Lock()
	rec := c.rec.clone()
	e.mu.Unlock()
	st := steps.Start(ctx, "docker remove")
	defer st.Log("id", rec.ID)
	var errs []error
	// The networks (a CNI DEL when still attached) go while the runtime
	// removes the container; both before the sandbox, which holds the
	// network namespace.
	netErr := make(chan error, 1)
	go func() {
		if e.net == nil {
			netErr <- nil
			return
		}
		netErr <- e.net.Unregister(ctx, rec.ID)
	}()
	if err := e.rt.RemoveContainer(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	st.Done("runtime-container")
	if err := <-netErr; err != nil {
		errs = append(errs, err)
	}
	st.Done("network")
	// The sandbox and the writable layer (unmounted with the container)
	// go at once: one is unmounts and cgroups, the other a tree to delete.
	snapErr := make(chan error, 1)
	go func() {
		snapErr <- errors.Join(e.images.RemoveSnapshot(ctx, rec.ID), e.removeImageMounts(ctx, rec.Mounts))
	}()
	if err := e.rt.RemoveSandbox(ctx, rec.ID); err != nil {
		errs = append(errs, err)
	}
	if err := <-snapErr; err != nil {
		errs = append(errs, err)
	}
	st.Done("sandbox+snapshot")
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	var removedVolumes []string
	for _, mp := range rec.Mounts {
		if mp.Type != mount.TypeVolume {
			continue
		}
		e.volumes.Unref(mp.Name, rec.ID)
		if (mp.Anonymous || mp.SharedAnonymous) && o.volumes {
			err := e.volumes.Remove(ctx, mp.Name, volume.RemoveOptions{})
			switch {
			case err == nil:
				removedVolumes = append(removedVolumes, mp.Name)
			case errdefs.IsNotFound(err), errdefs.IsConflict(err):
				// Gone already, or another container uses it now.
			default:
				errs = append(errs, err)
			}
		}
	}
	e.logs.Remove(rec.ID)
	if err := removeRecord(e.containerDir(rec.ID)); err != nil {
		return fmt.Errorf("remove container %s: %w", rec.ID, err)
	}
	e.dropHealth(rec.ID)
	e.mu.Lock()
	delete(e.containers, rec.ID)
	e.releaseNameLocked(rec.Name, rec.ID)
	c.removed = true
	c.notify()
	e.pruneExecsLocked()
	e.mu.Unlock()
	e.log(c, events.ActionDestroy, nil)
	for _, v := range removedVolumes {
		e.events.Publish(events.Message{Type: events.VolumeEventType, Action: events.ActionDestroy, Actor: events.Actor{ID: v, Attributes: map[string]string{"driver": volume.DriverLocal}}})
	}
	return errors.Join(errs...)
}
