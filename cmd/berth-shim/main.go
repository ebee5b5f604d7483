// Command berth-shim is the small per-container monitor berthd starts (see
// runtime/shim/monitor) and the pod's pause process. It links no
// libcontainer: build it with CGO_ENABLED=0. For the operations that need
// libcontainer it runs berth-runc, found next to it unless --runc says.
//
//	berth-shim run --standby [--runc FILE]   (the container as a wire.Job line on fd 4)
//	berth-shim pause                         (holds once berthd writes a byte on fd 3; exits if fd 3 closes first)
//	docker-init -- CMD [ARG...]              (called so inside a container: --init)
//
// containermaxprocs=0: lean sets GOMAXPROCS itself, so the runtime's
// start-up probe of the cgroup CPU limit (which parses
// /proc/self/mountinfo) is wasted work on every container's start path.

//go:debug containermaxprocs=0
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/runtime/shim/monitor"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

func main() {
	if filepath.Base(os.Args[0]) == "docker-init" {
		// Mounted into a container for Docker's --init.
		lean()
		os.Exit(monitor.Init(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: berth-shim run|pause [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		lean()
		os.Exit(run(os.Args[2:]))
	case "pause":
		os.Exit(monitor.Pause())
	default:
		fmt.Fprintf(os.Stderr, "berth-shim: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

// runcBinary is the libcontainer helper's name; make build and packages
// install it next to berth-shim.
const runcBinary = "berth-runc"

func run(args []string) int {
	var o monitor.Options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.Runc, "runc", "", "berth-runc executable (default: next to berth-shim)")
	standby := fs.Bool("standby", false, "wait for the container as a JSON line (wire.Job) on fd 4; report readiness on fd 3")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if !*standby || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: berth-shim run --standby [--runc FILE] (berthd starts it; the container comes on fd 4)")
		return 2
	}
	// The ready and job pipes came without close-on-exec: keep them out
	// of berth-runc and everything it starts.
	unix.CloseOnExec(3)
	unix.CloseOnExec(4)
	ok, err := awaitJob(&o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
		return 1
	}
	if !ok {
		return 0
	}
	if o.Runc == "" {
		o.Runc = runcBinary
		if self, err := os.Executable(); err == nil {
			o.Runc = filepath.Join(filepath.Dir(self), runcBinary)
		}
	}
	o.Ready = os.NewFile(3, "ready")
	if err := monitor.Run(o); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
		return 1
	}
	return 0
}

// awaitJob reads the shim's job from fd 4 into o and sends the shim's
// output to the state directory's log. EOF (berthd closed a spare or died)
// is no job: false, nil.
func awaitJob(o *monitor.Options) (bool, error) {
	f := os.NewFile(4, "job")
	b, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		return false, fmt.Errorf("read job: %w", err)
	}
	if len(b) == 0 {
		return false, nil
	}
	var j wire.Job
	if err := json.Unmarshal(b, &j); err != nil {
		return false, fmt.Errorf("decode job: %w", err)
	}
	o.ID, o.Bundle, o.StateDir, o.LogPath, o.Log, o.Stdin, o.StdinOnce, o.CreateOnly = j.ID, j.Bundle, j.StateDir, j.LogPath, j.Log, j.Stdin, j.StdinOnce, j.CreateOnly
	o.SeccompCache = j.SeccompCache
	if o.StateDir == "" {
		return false, fmt.Errorf("job without a state dir")
	}
	logf, err := os.OpenFile(filepath.Join(o.StateDir, wire.LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return false, fmt.Errorf("open shim log: %w", err)
	}
	defer logf.Close()
	for _, fd := range []int{1, 2} {
		if err := unix.Dup3(int(logf.Fd()), fd, 0); err != nil {
			return false, fmt.Errorf("redirect output to the shim log: %w", err)
		}
	}
	return true, nil
}

// lean tunes the Go runtime for a monitor that idles for its container's
// whole life: the shim's private memory is what every running container
// costs. One P: the shim's work is a few pipes and requests, and each P
// keeps caches and a thread (-300 kB). GC at 25 % growth instead of 100 %:
// with the default, the execs and stats requests of a long-lived
// container let the heap grow to the 4 MB minimum before the first
// collection (measured: 6.9 MB private after 30 exec+stats, 4.1 MB with
// 25 %); the heap stays under 1 MB, so collections are cheap.
func lean() {
	goruntime.GOMAXPROCS(1)
	debug.SetGCPercent(25)
}
