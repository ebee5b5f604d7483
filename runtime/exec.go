package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
	"github.com/berth-dev/berth/runtime/spec"
)

// running returns the client of a running container.
func (m *Manager) running(id, what string) (*container, *shim.Client, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if state != ContainerRunning || cl == nil {
		return nil, nil, fmt.Errorf("%s %s: container is %s: %w", what, c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	return c, cl, nil
}

// execProcess is the container's process (env, user, capabilities, ...)
// with another command line and o's changes.
func (m *Manager) execProcess(c *container, o ExecOptions) (specs.Process, error) {
	if len(o.Cmd) == 0 {
		return specs.Process{}, fmt.Errorf("exec in %s: empty command: %w", c.rec.ID, errdefs.ErrInvalidArgument)
	}
	base, err := m.bundleProcess(c)
	if err != nil {
		return specs.Process{}, err
	}
	// A copy; nothing below changes what it shares with the cache in
	// place (mergeEnv copies, the rest is replaced whole).
	p := *base
	p.Args = o.Cmd
	p.Terminal = o.TTY
	p.ConsoleSize = nil
	p.Env = mergeEnv(p.Env, o.Env)
	if o.WorkDir != "" {
		if !filepath.IsAbs(o.WorkDir) {
			return specs.Process{}, fmt.Errorf("exec in %s: working directory %q is not absolute: %w", c.rec.ID, o.WorkDir, errdefs.ErrInvalidArgument)
		}
		p.Cwd = o.WorkDir
	}
	if o.User != "" {
		uid, gid, groups, err := spec.ResolveUser(filepath.Join(c.rec.Bundle, "rootfs"), o.User, spec.GroupsMerge)
		if err != nil {
			return specs.Process{}, fmt.Errorf("exec in %s: %w", c.rec.ID, err)
		}
		all := []uint32{gid}
		for _, g := range groups {
			if !slices.Contains(all, g) {
				all = append(all, g)
			}
		}
		p.User = specs.User{UID: uid, GID: gid, AdditionalGids: all}
	}
	if o.Capabilities != nil {
		caps := slices.Clone(o.Capabilities)
		p.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	}
	return p, nil
}

// bundleProcess is the process of c's bundle, read once.
func (m *Manager) bundleProcess(c *container) (*specs.Process, error) {
	m.mu.Lock()
	p := c.process
	m.mu.Unlock()
	if p != nil {
		return p, nil
	}
	// Only the process is decoded; the rest of the spec is skipped.
	var sp struct {
		Process *specs.Process `json:"process"`
	}
	b, err := os.ReadFile(filepath.Join(c.rec.Bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("exec in %s: read bundle: %w", c.rec.ID, err)
	}
	if err := json.Unmarshal(b, &sp); err != nil || sp.Process == nil {
		return nil, fmt.Errorf("exec in %s: decode bundle: %w: %w", c.rec.ID, errdefs.ErrDataLoss, err)
	}
	m.mu.Lock()
	c.process = sp.Process
	m.mu.Unlock()
	return sp.Process, nil
}

// mergeEnv replaces the entries of env whose key set has, and appends the
// others.
func mergeEnv(env, set []string) []string {
	out := slices.Clone(env)
	for _, kv := range set {
		k, _, _ := strings.Cut(kv, "=")
		i := slices.IndexFunc(out, func(e string) bool {
			ek, _, _ := strings.Cut(e, "=")
			return ek == k
		})
		if i >= 0 {
			out[i] = kv
		} else {
			out = append(out, kv)
		}
	}
	return out
}

// ExecSync runs cmd in the running container and returns its output, each
// stream capped at MaxExecSyncOutput. A timeout > 0 kills the process when
// it expires and returns an error wrapping context.DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration) (stdout, stderr []byte, exitCode int32, err error) {
	c, cl, err := m.running(id, "exec in container")
	if err != nil {
		return nil, nil, 0, err
	}
	p, err := m.execProcess(c, ExecOptions{Cmd: cmd})
	if err != nil {
		return nil, nil, 0, err
	}
	ectx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		ectx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	var out, errb cappedBuffer
	e, err := cl.Exec(ectx, shim.ExecOptions{Process: p, Streams: shim.Streams{Stdout: &out, Stderr: &errb}})
	if err != nil {
		if ctx.Err() == nil && errors.Is(ectx.Err(), context.DeadlineExceeded) {
			return out.bytes(), errb.bytes(), 0, fmt.Errorf("exec in container %s: timeout %s exceeded: %w", c.rec.ID, timeout, context.DeadlineExceeded)
		}
		return nil, nil, 0, fmt.Errorf("exec in container %s: %w", c.rec.ID, err)
	}
	return out.bytes(), errb.bytes(), int32(e.Code), nil
}

// cappedBuffer keeps the first MaxExecSyncOutput bytes and drops the rest.
type cappedBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := MaxExecSyncOutput - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (b *cappedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf
}

func wireSize(s Size) wire.Size { return wire.Size{Width: s.Width, Height: s.Height} }

// shimStreams converts s; the resize relay ends with ctx.
func shimStreams(ctx context.Context, s Streams) shim.Streams {
	out := shim.Streams{Stdin: s.Stdin, Stdout: s.Stdout, Stderr: s.Stderr, Attached: s.Attached}
	if s.Resize != nil {
		ch := make(chan wire.Size)
		go func() {
			defer close(ch)
			for {
				select {
				case sz, ok := <-s.Resize:
					if !ok {
						return
					}
					select {
					case ch <- wire.Size{Width: sz.Width, Height: sz.Height}:
					case <-ctx.Done():
						return
					}
				case <-ctx.Done():
					return
				}
			}
		}()
		out.Resize = ch
	}
	return out
}

// Exec runs a process in the running container, streams its stdio and
// returns its exit code. If ctx ends first the process is killed.
func (m *Manager) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	c, cl, err := m.running(id, "exec in container")
	if err != nil {
		return 0, err
	}
	p, err := m.execProcess(c, o)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	e, err := cl.Exec(ctx, shim.ExecOptions{Process: p, Streams: shimStreams(ctx, o.Streams), Started: o.Started})
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", c.rec.ID, err)
	}
	return e.Code, nil
}

// Attach connects s to the container's stdio until it exits or ctx ends.
// The container may be running or created but not started yet (Docker
// attaches before it starts): s.Attached then tells when StartContainer
// can no longer run output past the streams.
func (m *Manager) Attach(ctx context.Context, id string, s Streams) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("attach to container: %w", err)
	}
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if (state != ContainerRunning && state != ContainerCreated) || cl == nil {
		return fmt.Errorf("attach to container %s: container is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := cl.Attach(ctx, shimStreams(ctx, s)); err != nil {
		return fmt.Errorf("attach to container %s: %w", c.rec.ID, err)
	}
	return nil
}

// ReopenContainerLog makes the shim reopen the container's log file.
func (m *Manager) ReopenContainerLog(ctx context.Context, id string) error {
	c, cl, err := m.running(id, "reopen log of container")
	if err != nil {
		return err
	}
	if err := cl.ReopenLog(ctx); err != nil {
		return fmt.Errorf("reopen log of container %s: %w", c.rec.ID, err)
	}
	return nil
}
