// Command berth-runc is berth-shim's short-lived libcontainer helper (see
// runtime/shim/libct) and, re-executed by libcontainer, the container's
// init. The long-lived monitor runs it once per operation; it prints one
// wire.RuncResult JSON line on stdout and exits 0, or 1 with the error in
// that line. Build it with cgo and -tags seccomp.
//
//	berth-runc create --root DIR --id ID --bundle DIR [--start] [--seccomp-cache DIR] [STDIO]
//	berth-runc start  --root DIR --id ID
//	berth-runc exec   --root DIR --id ID [STDIO]   (process JSON on stdin)
//	berth-runc kill   --root DIR --id ID --signal N
//	berth-runc update --root DIR --id ID           (resources JSON on stdin)
//	berth-runc pause  --root DIR --id ID
//	berth-runc resume --root DIR --id ID
//	berth-runc delete --root DIR --id ID
//
// --seccomp-cache names a directory shared by all containers that keeps
// their seccomp profiles compiled (see runtime/shim/libct): the container's
// init and its execs load the program instead of compiling the profile.
//
// STDIO is --stdin-fd, --stdout-fd, --stderr-fd or --console-fd: inherited
// descriptors the new process gets (a console socket receives the master
// end of its new terminal).
//
// It is linked statically (see the Makefile): it is executed twice per
// container creation, once as the helper and once as the container's init,
// and the dynamic loader cost 0.65 ms of each start here. For the same
// reason the runtime does not size GOMAXPROCS from the cgroup's CPU limit
// (containermaxprocs=0): that reads /proc/self/mountinfo, which grows with
// every pod's mounts, and a helper that lives a few milliseconds has no
// use for it.

//go:debug containermaxprocs=0
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/libct"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// init, not main: libcontainer's init must run before anything else in
// the re-executed binary (nsenter's C constructor has already run).
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

func main() {
	res, err := run(os.Args[1:])
	if err != nil {
		res = wire.RuncResult{Error: err.Error(), Class: wire.Class(err)}
	}
	b, _ := json.Marshal(res)
	_, _ = os.Stdout.Write(append(b, '\n'))
	if err != nil {
		os.Exit(1)
	}
}

func run(args []string) (wire.RuncResult, error) {
	if len(args) < 1 {
		return wire.RuncResult{}, fmt.Errorf("usage: berth-runc create|start|exec|kill|update|delete|pause|resume [flags]: %w", errdefs.ErrInvalidArgument)
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	root := fs.String("root", "", "libcontainer state root")
	id := fs.String("id", "", "container id")
	bundle := fs.String("bundle", "", "OCI bundle directory (create)")
	start := fs.Bool("start", false, "run the process at once (create)")
	sig := fs.Int("signal", int(unix.SIGTERM), "signal number (kill)")
	stdin := fs.Int("stdin-fd", -1, "inherited descriptor for the process's stdin")
	stdout := fs.Int("stdout-fd", -1, "inherited descriptor for the process's stdout")
	stderr := fs.Int("stderr-fd", -1, "inherited descriptor for the process's stderr")
	console := fs.Int("console-fd", -1, "inherited socket that receives the terminal's master")
	seccompCache := fs.String("seccomp-cache", "", "directory of compiled seccomp filters shared by containers (create)")
	if err := fs.Parse(args[1:]); err != nil {
		return wire.RuncResult{}, fmt.Errorf("%s: %w: %w", cmd, errdefs.ErrInvalidArgument, err)
	}
	if *root == "" || *id == "" {
		return wire.RuncResult{}, fmt.Errorf("%s: --root and --id are required: %w", cmd, errdefs.ErrInvalidArgument)
	}
	stdio := libct.Stdio{Stdin: inherited(*stdin), Stdout: inherited(*stdout), Stderr: inherited(*stderr), ConsoleSocket: inherited(*console)}
	switch cmd {
	case "create":
		return libct.Create(libct.CreateOptions{Root: *root, ID: *id, Bundle: *bundle, Stdio: stdio, Start: *start, SeccompCache: *seccompCache})
	case "start":
		return wire.RuncResult{}, libct.Start(*root, *id)
	case "exec":
		var p specs.Process
		if err := json.NewDecoder(os.Stdin).Decode(&p); err != nil {
			return wire.RuncResult{}, fmt.Errorf("exec: decode process: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		pid, err := libct.Exec(*root, *id, &p, stdio)
		return wire.RuncResult{Pid: pid}, err
	case "kill":
		return wire.RuncResult{}, libct.Kill(*root, *id, unix.Signal(*sig))
	case "update":
		var r specs.LinuxResources
		if err := json.NewDecoder(os.Stdin).Decode(&r); err != nil {
			return wire.RuncResult{}, fmt.Errorf("update: decode resources: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		return wire.RuncResult{}, libct.Update(*root, *id, &r)
	case "delete":
		return wire.RuncResult{}, libct.Delete(*root, *id)
	case "pause":
		return wire.RuncResult{}, libct.Pause(*root, *id)
	case "resume":
		return wire.RuncResult{}, libct.Resume(*root, *id)
	}
	return wire.RuncResult{}, fmt.Errorf("berth-runc: unknown command %q: %w", cmd, errdefs.ErrInvalidArgument)
}

// inherited wraps an inherited descriptor, or returns nil for -1. It is
// marked close-on-exec at once: only the process it is meant for may get
// it (libcontainer passes it explicitly), never libcontainer's helpers.
func inherited(fd int) *os.File {
	if fd < 0 {
		return nil
	}
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), fmt.Sprintf("fd%d", fd))
}
