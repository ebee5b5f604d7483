package runtime

import (
	"context"
	"fmt"
	"syscall"

	"github.com/containerd/errdefs"
)

// PauseContainer freezes every process of the running container (the
// freezer cgroup). SIGKILL still ends a paused container.
func (m *Manager) PauseContainer(ctx context.Context, id string) error {
	return m.freeze(ctx, id, true)
}

// ResumeContainer thaws a paused container.
func (m *Manager) ResumeContainer(ctx context.Context, id string) error {
	return m.freeze(ctx, id, false)
}

func (m *Manager) freeze(ctx context.Context, id string, pause bool) error {
	what := "pause container"
	if !pause {
		what = "resume container"
	}
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	state, cl, paused := c.rec.State, c.client, c.rec.Paused
	m.mu.Unlock()
	switch {
	case state != ContainerRunning || cl == nil:
		return fmt.Errorf("%s %s: it is %s: %w", what, c.rec.ID, state, errdefs.ErrFailedPrecondition)
	case pause && paused:
		return fmt.Errorf("%s %s: it is paused already: %w", what, c.rec.ID, errdefs.ErrFailedPrecondition)
	case !pause && !paused:
		return fmt.Errorf("%s %s: it is not paused: %w", what, c.rec.ID, errdefs.ErrFailedPrecondition)
	}
	if pause {
		err = cl.Pause(ctx)
	} else {
		err = cl.Resume(ctx)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, c.rec.ID, err)
	}
	m.mu.Lock()
	if c.rec.State == ContainerRunning {
		c.rec.Paused = pause
	}
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("%s %s: %w", what, c.rec.ID, err)
	}
	return nil
}

// ResizeContainer sets the size of the terminal of the container's
// process (a container created with TTY).
func (m *Manager) ResizeContainer(ctx context.Context, id string, s Size) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("resize container: %w", err)
	}
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if (state != ContainerRunning && state != ContainerCreated) || cl == nil {
		return fmt.Errorf("resize container %s: it is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	if err := cl.Resize(ctx, wireSize(s)); err != nil {
		return fmt.Errorf("resize container %s: %w", c.rec.ID, err)
	}
	return nil
}

// SignalContainer sends sig to the container's init (Docker's kill); a
// SIGKILL of a container without its own PID namespace kills all its
// processes. A container that is not running is ErrFailedPrecondition; one
// that exits meanwhile ErrNotFound.
func (m *Manager) SignalContainer(ctx context.Context, id string, sig syscall.Signal) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("signal container: %w", err)
	}
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if state != ContainerRunning || cl == nil {
		return fmt.Errorf("signal container %s: it is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	if err := cl.Signal(ctx, sig); err != nil {
		return fmt.Errorf("signal container %s: %w", c.rec.ID, err)
	}
	return nil
}
