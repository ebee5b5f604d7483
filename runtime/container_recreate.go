package runtime

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/runtime/shim"
)

// RecreateContainer gives an exited container a new shim, with its process
// created but not started, on the same rootfs and bundle: StartContainer
// then runs it again. This is Docker's start of a stopped container (and
// what its restart policies do); the CRI never restarts a container. The
// log file is appended to. The previous run's exit code and reason are
// cleared; FinishedAt keeps its time until the next exit, as Docker shows
// it.
func (m *Manager) RecreateContainer(ctx context.Context, id string) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("recreate container: %w", err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	rec := c.rec
	cl := c.client
	var sb *sandbox
	if rec.SandboxID != "" {
		sb = m.sandboxes[rec.SandboxID]
	}
	sbReady := sb == nil || (sb.rec.State == SandboxReady && !sb.rec.Pending)
	m.mu.Unlock()
	switch {
	case rec.State != ContainerExited:
		return fmt.Errorf("recreate container %s: it is %s: %w", rec.ID, rec.State, errdefs.ErrFailedPrecondition)
	case !sbReady:
		return fmt.Errorf("recreate container %s: sandbox %s is not ready: %w", rec.ID, rec.SandboxID, errdefs.ErrFailedPrecondition)
	}
	// The previous shim goes first: it holds the exit file and
	// libcontainer's state in the directory the new one takes over.
	if cl == nil {
		cl, _ = shim.Connect(ctx, rec.ShimDir)
	}
	shimGone := cl == nil
	if shimGone {
		if err := shim.KillStray(ctx, rec.ShimDir); err != nil {
			return fmt.Errorf("recreate container %s: %w", rec.ID, err)
		}
	}
	if cl != nil {
		err := cl.Delete(ctx, shim.DeleteOptions{Force: true})
		if err != nil && !errdefs.IsUnavailable(err) {
			return fmt.Errorf("recreate container %s: delete the previous run: %w", rec.ID, err)
		}
		shimGone = err != nil
		if err == nil {
			if err := cl.Shutdown(ctx); err != nil && !errdefs.IsUnavailable(err) {
				return fmt.Errorf("recreate container %s: shut down the previous shim: %w", rec.ID, err)
			}
		}
	}
	if shimGone && rec.CgroupsPath != "" && m.cfg.CgroupDriver == CgroupDriverCgroupfs {
		if err := killCgroup(ctx, rec.CgroupsPath); err != nil {
			return fmt.Errorf("recreate container %s: %w", rec.ID, err)
		}
	}
	if err := os.RemoveAll(rec.ShimDir); err != nil {
		return fmt.Errorf("recreate container %s: %w", rec.ID, err)
	}
	m.warmer.warm()
	cfg := rec.Config
	ncl, err := m.launcher.Start(ctx, shim.StartOptions{
		ID: rec.ID, Bundle: rec.Bundle, StateDir: rec.ShimDir,
		LogPath: cfg.LogPath, Log: cfg.Log.wire(), Stdin: cfg.Stdin, StdinOnce: cfg.Stdin && cfg.StdinOnce, CreateOnly: true,
		SeccompCache: m.seccompCacheDir(),
	})
	if err != nil {
		// Still exited; the next attempt starts from a clean directory.
		m.mu.Lock()
		c.client = nil
		m.mu.Unlock()
		return fmt.Errorf("recreate container %s: %w", rec.ID, err)
	}
	m.mu.Lock()
	c.client = ncl
	c.exited = make(chan struct{})
	r := &c.rec
	r.State = ContainerCreated
	r.Pid = ncl.Pid()
	r.ExitCode, r.Reason, r.Message = 0, "", ""
	r.Paused = false
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("recreate container %s: %w", rec.ID, err)
	}
	m.watch(ctx, c)
	m.emit(c, EventCreated)
	return nil
}
