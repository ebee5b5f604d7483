// Package libct is berth-runc's engine: every function is one short-lived
// libcontainer operation on one container, the way runc's CLI works. The
// container's state lives under a root directory, so each berth-runc
// process Loads it afresh; the long-lived monitor (runtime/shim/monitor)
// links none of this and execs berth-runc for each operation.
//
// Create and Exec start processes with stdio the caller passed in as open
// files. berth-runc does not wait for them: their parent exits (nsenter's
// intermediate stages, then berth-runc itself) and the kernel re-parents
// them to the monitor, a child subreaper, which reaps them and records
// their exit.
package libct

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// Stdio is what a new process gets as its standard streams. Nil members
// read or write /dev/null. With ConsoleSocket set the process gets a new
// terminal instead, whose master end is sent over that socket.
type Stdio struct {
	Stdin, Stdout, Stderr *os.File
	ConsoleSocket         *os.File
}

func (s Stdio) apply(p *libcontainer.Process) {
	if s.ConsoleSocket != nil {
		p.ConsoleSocket = s.ConsoleSocket
		return
	}
	// *os.File, not io.Reader/Writer: os/exec hands the fds over as they
	// are, with no copying goroutine tied to this short-lived process.
	if s.Stdin != nil {
		p.Stdin = s.Stdin
	}
	if s.Stdout != nil {
		p.Stdout = s.Stdout
	}
	if s.Stderr != nil {
		p.Stderr = s.Stderr
	}
}

// CreateOptions describe a container to create.
type CreateOptions struct {
	// Root is libcontainer's state root; the container's state goes in
	// Root/ID.
	Root   string
	ID     string
	Bundle string
	Stdio  Stdio
	// Start runs the process at once; otherwise the init waits for Start
	// (CRI's CreateContainer / StartContainer split).
	Start bool
	// SeccompCache is a directory shared by containers that keeps
	// compiled seccomp filters; empty compiles the container's anew.
	SeccompCache string
}

// cgroupDirsFile records, next to the container's state, the cgroup
// directories creation made, for Delete to remove.
func cgroupDirsFile(root, id string) string { return filepath.Join(root, id+".cgroups") }

// Create creates the container from its bundle and starts its init (and,
// with Start, the process). The result has the init's PID and the cgroup
// paths.
func Create(o CreateOptions) (_ wire.RuncResult, retErr error) {
	if o.Root == "" || o.ID == "" || o.Bundle == "" {
		return wire.RuncResult{}, fmt.Errorf("create container: root, id and bundle are required: %w", errdefs.ErrInvalidArgument)
	}
	b, err := os.ReadFile(filepath.Join(o.Bundle, "config.json"))
	if err != nil {
		return wire.RuncResult{}, fmt.Errorf("read bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return wire.RuncResult{}, fmt.Errorf("parse bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if spec.Process == nil {
		return wire.RuncResult{}, fmt.Errorf("bundle config has no process: %w", errdefs.ErrInvalidArgument)
	}
	// specconv resolves a relative root path against the working directory,
	// as runc does from inside the bundle.
	if err := os.Chdir(o.Bundle); err != nil {
		return wire.RuncResult{}, fmt.Errorf("enter bundle: %w", err)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: o.ID, Spec: &spec})
	if err != nil {
		return wire.RuncResult{}, fmt.Errorf("convert bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	precompileSeccomp(cfg.Seccomp, o.SeccompCache)
	dirs, err := missingCgroupDirs(cfg.Cgroups)
	if err != nil {
		return wire.RuncResult{}, err
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return wire.RuncResult{}, err
	}
	proc.Init = true
	o.Stdio.apply(proc)
	c, err := libcontainer.Create(o.Root, o.ID, cfg)
	if err != nil {
		return wire.RuncResult{}, fmt.Errorf("create container %s: %w", o.ID, err)
	}
	defer func() {
		if retErr != nil {
			_ = destroy(c, proc)
			_ = removeCgroupDirs(dirs)
			_ = os.Remove(cgroupDirsFile(o.Root, o.ID))
		}
	}()
	if err := writeJSON(cgroupDirsFile(o.Root, o.ID), dirs); err != nil {
		return wire.RuncResult{}, fmt.Errorf("record cgroups of container %s: %w", o.ID, err)
	}
	run := c.Start
	if o.Start {
		run = c.Run
	}
	if err := run(proc); err != nil {
		return wire.RuncResult{}, fmt.Errorf("start container %s init: %w", o.ID, err)
	}
	pid, err := proc.Pid()
	if err != nil {
		return wire.RuncResult{}, fmt.Errorf("start container %s init: %w", o.ID, err)
	}
	st, err := c.State()
	if err != nil {
		return wire.RuncResult{}, fmt.Errorf("state of container %s: %w", o.ID, err)
	}
	return wire.RuncResult{Pid: pid, CgroupPaths: st.CgroupPaths}, nil
}

// destroy undoes a failed creation. The init, if it was started, is not
// this process's child any more (nsenter's stages re-parented it to the
// monitor), so its end shows only as a zombie: retry until libcontainer
// sees it gone.
func destroy(c *libcontainer.Container, p *libcontainer.Process) error {
	if pid, err := p.Pid(); err == nil && pid > 0 {
		_ = c.Signal(unix.SIGKILL)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := c.Destroy()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func load(root, id string) (*libcontainer.Container, error) {
	c, err := libcontainer.Load(root, id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		return nil, fmt.Errorf("load container %s: %w: %w", id, errdefs.ErrNotFound, err)
	}
	if err != nil {
		return nil, fmt.Errorf("load container %s: %w", id, err)
	}
	return c, nil
}

// Start runs the process of a created container: it opens the exec fifo
// the init waits on.
func Start(root, id string) error {
	c, err := load(root, id)
	if err != nil {
		return err
	}
	if err := c.Exec(); err != nil {
		return fmt.Errorf("start container %s: %w", id, err)
	}
	return nil
}

// Exec starts p in the running container and returns its host PID.
func Exec(root, id string, p *specs.Process, stdio Stdio) (int, error) {
	c, err := load(root, id)
	if err != nil {
		return 0, err
	}
	proc, err := newProcess(p)
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	stdio.apply(proc)
	if err := c.Start(proc); err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	pid, err := proc.Pid()
	if err != nil {
		return 0, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return pid, nil
}

// Kill sends sig to the container's init; SIGKILL of a container without
// its own PID namespace kills every process in its cgroup. A container
// that is not running gives errdefs.ErrNotFound.
func Kill(root, id string, sig unix.Signal) error {
	c, err := load(root, id)
	if err != nil {
		return err
	}
	paused := false
	if st, err := c.Status(); err == nil && st == libcontainer.Paused {
		paused = true
	}
	err = c.Signal(sig)
	if errors.Is(err, libcontainer.ErrNotRunning) {
		return fmt.Errorf("signal container %s: %w: %w", id, errdefs.ErrNotFound, err)
	}
	if err != nil {
		return fmt.Errorf("signal container %s: %w", id, err)
	}
	if sig == unix.SIGKILL && paused {
		// A frozen process dies only once thawed (cgroup v1), and
		// libcontainer thaws only on its own PID-namespace path.
		if err := c.Resume(); err != nil && !errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("thaw killed container %s: %w", id, err)
		}
	}
	return nil
}

// Delete removes the container's state and its cgroups, and the parent
// cgroups its creation made. The container must have stopped. A container
// already gone is not an error.
func Delete(root, id string) error {
	c, err := load(root, id)
	switch {
	case errors.Is(err, errdefs.ErrNotFound):
	case err != nil:
		return err
	default:
		if err := c.Destroy(); err != nil {
			return fmt.Errorf("destroy container %s: %w", id, err)
		}
	}
	var dirs []string
	b, err := os.ReadFile(cgroupDirsFile(root, id))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read cgroups of container %s: %w", id, err)
	}
	if err := json.Unmarshal(b, &dirs); err != nil {
		return fmt.Errorf("decode cgroups of container %s: %w: %w", id, errdefs.ErrDataLoss, err)
	}
	if err := removeCgroupDirs(dirs); err != nil {
		return err
	}
	return os.Remove(cgroupDirsFile(root, id))
}

// Pause freezes every process of the container (the freezer cgroup).
func Pause(root, id string) error {
	c, err := load(root, id)
	if err != nil {
		return err
	}
	if err := c.Pause(); err != nil {
		if errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("pause container %s: %w: %w", id, errdefs.ErrFailedPrecondition, err)
		}
		return fmt.Errorf("pause container %s: %w", id, err)
	}
	return nil
}

// Resume thaws a paused container.
func Resume(root, id string) error {
	c, err := load(root, id)
	if err != nil {
		return err
	}
	if err := c.Resume(); err != nil {
		if errors.Is(err, libcontainer.ErrNotPaused) {
			return fmt.Errorf("resume container %s: %w: %w", id, errdefs.ErrFailedPrecondition, err)
		}
		return fmt.Errorf("resume container %s: %w", id, err)
	}
	return nil
}

// Update changes the container's cgroup limits; fields left nil stay.
func Update(root, id string, r *specs.LinuxResources) error {
	if r == nil {
		return fmt.Errorf("update without resources: %w", errdefs.ErrInvalidArgument)
	}
	c, err := load(root, id)
	if err != nil {
		return err
	}
	cfg := c.Config()
	res := cfg.Cgroups.Resources
	if c := r.CPU; c != nil {
		if c.Shares != nil {
			res.CpuShares = *c.Shares
		}
		if c.Quota != nil {
			res.CpuQuota = *c.Quota
		}
		if c.Period != nil {
			res.CpuPeriod = *c.Period
		}
		if c.Cpus != "" {
			res.CpusetCpus = c.Cpus
		}
		if c.Mems != "" {
			res.CpusetMems = c.Mems
		}
	}
	if mem := r.Memory; mem != nil {
		if mem.Limit != nil {
			res.Memory = *mem.Limit
		}
		if mem.Reservation != nil {
			res.MemoryReservation = *mem.Reservation
		}
		if mem.Swap != nil {
			res.MemorySwap = *mem.Swap
		}
	}
	if p := r.Pids; p != nil {
		res.PidsLimit = p.Limit
	}
	for _, h := range r.HugepageLimits {
		res.HugetlbLimit = append(res.HugetlbLimit, &cgroups.HugepageLimit{Pagesize: h.Pagesize, Limit: h.Limit})
	}
	if len(r.Unified) > 0 {
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		for k, v := range r.Unified {
			res.Unified[k] = v
		}
	}
	if err := c.Set(cfg); err != nil {
		return fmt.Errorf("update resources of container %s: %w", id, err)
	}
	return nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o600)
}
