package monitor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// runc runs berth-runc, the short-lived helper that links libcontainer,
// for one container. Keeping libcontainer out of the monitor is what makes
// the monitor small: its binary pages and its Go runtime are paid for
// every running container, berth-runc's only for the milliseconds of an
// operation.
type runc struct {
	binary string
	// root is libcontainer's state root: the container's state lives
	// there between berth-runc runs.
	root   string
	id     string
	reaper *reaper
}

// waitDelay bounds the wait for berth-runc's stdout to close after it
// exited, should a process it started ever inherit it.
const waitDelay = 10 * time.Second

// runcCall is one berth-runc command.
type runcCall struct {
	op   string
	args []string
	// input is encoded as JSON on berth-runc's stdin.
	input any
	// files become berth-runc's descriptors 3, 4, ...
	files []*os.File
	// started, when set, gets the PID of the process the command started.
	// It runs while the reaper's catch-all pass is held off, so that it can
	// register the PID before anything reaps that process.
	started func(pid int)
}

func (r *runc) call(c runcCall) (wire.RuncResult, error) {
	cmd := exec.Command(r.binary, append([]string{c.op, "--root", r.root, "--id", r.id}, c.args...)...)
	if c.input != nil {
		b, err := json.Marshal(c.input)
		if err != nil {
			return wire.RuncResult{}, fmt.Errorf("berth-runc %s: encode input: %w: %w", c.op, errdefs.ErrInvalidArgument, err)
		}
		cmd.Stdin = bytes.NewReader(b)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	// libcontainer's warnings go to the shim's log.
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = c.files
	cmd.WaitDelay = waitDelay
	var res wire.RuncResult
	// The processes berth-runc starts are orphaned to this subreaper while
	// it runs; the catch-all reaping waits until their PIDs are known.
	err := r.reaper.do(func() error {
		runErr := cmd.Run()
		if err := json.Unmarshal(bytes.TrimSpace(out.Bytes()), &res); err != nil {
			if runErr == nil {
				runErr = err
			}
			return fmt.Errorf("berth-runc %s of container %s: %w: %w", c.op, r.id, errdefs.ErrUnknown, runErr)
		}
		if res.Error != "" {
			return wire.Error(res.Error, res.Class)
		}
		if runErr != nil {
			return fmt.Errorf("berth-runc %s of container %s: %w", c.op, r.id, runErr)
		}
		if c.started != nil && res.Pid > 0 {
			c.started(res.Pid)
		}
		return nil
	})
	return res, err
}

// bundleConfig is the part of the bundle's config.json the monitor needs.
// Decoding only this, not a whole specs.Spec, spares the shim building
// encoding/json's field cache for the spec's many types in every new
// process: about 0.9 ms of CPU on the CreateContainer path (perf, 2-core
// VM). berth-runc reads the whole spec.
type bundleConfig struct {
	Process *struct {
		Terminal bool `json:"terminal,omitempty"`
	} `json:"process,omitempty"`
	Linux *struct {
		Namespaces []specs.LinuxNamespace `json:"namespaces,omitempty"`
	} `json:"linux,omitempty"`
}

func parseBundleConfig(b []byte) (bundleConfig, error) {
	var c bundleConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse bundle config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if c.Process == nil {
		return c, fmt.Errorf("bundle config has no process: %w", errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// privatePIDNamespace reports whether the spec gives the container a PID
// namespace of its own. Only then does SIGKILL of its init kill all its
// processes; otherwise berth-runc kills every process in the cgroup.
func (c bundleConfig) privatePIDNamespace() bool {
	if c.Linux == nil {
		return false
	}
	for _, ns := range c.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			return ns.Path == ""
		}
	}
	return false
}

// stdioArgs tells berth-runc which of its inherited descriptors (files at
// index i is descriptor 3+i) the process gets.
func stdioArgs(flags []string) []string {
	var args []string
	for i, f := range flags {
		if f != "" {
			args = append(args, f, strconv.Itoa(3+i))
		}
	}
	return args
}

// recvFile receives the one descriptor libcontainer's init sends over a
// console socket (the terminal's master end), with its name as data.
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	var n, oobn int
	var err error
	for {
		n, oobn, _, _, err = unix.Recvmsg(int(sock.Fd()), name, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, os.NewSyscallError("recvmsg", err)
	}
	scms, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, err
	}
	var fds []int
	for _, scm := range scms {
		if scm.Header.Type == unix.SCM_RIGHTS {
			got, err := unix.ParseUnixRights(&scm)
			if err == nil {
				fds = append(fds, got...)
			}
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			_ = unix.Close(fd)
		}
		return nil, fmt.Errorf("receive terminal: got %d descriptors, want 1", len(fds))
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
