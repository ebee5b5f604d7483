// Command berth-shim is the small per-container monitor berthd starts (see
// runtime/shim/monitor) and the pod's pause process. It links no
// libcontainer: build it with CGO_ENABLED=0. For the operations that need
// libcontainer it runs berth-runc, found next to it unless --runc says.
//
//	berth-shim run --id ID --bundle DIR --state-dir DIR [--log-path FILE] [--stdin] [--create-only] [--runc FILE]
//	berth-shim pause
//
// containermaxprocs=0: lean sets GOMAXPROCS itself, so the runtime's
// start-up probe of the cgroup CPU limit (which parses
// /proc/self/mountinfo) is wasted work on every container's start path.

//go:debug containermaxprocs=0
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"

	"github.com/berth-dev/berth/runtime/shim/monitor"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: berth-shim run|pause [flags]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "run":
		lean()
		os.Exit(run(os.Args[2:]))
	case "pause":
		monitor.Pause()
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
	fs.StringVar(&o.ID, "id", "", "container id")
	fs.StringVar(&o.Bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (socket, exit file)")
	fs.StringVar(&o.LogPath, "log-path", "", "CRI log file")
	fs.BoolVar(&o.Stdin, "stdin", false, "keep the container's stdin open for attach")
	fs.BoolVar(&o.CreateOnly, "create-only", false, "wait for a start request before running the process")
	fs.StringVar(&o.Runc, "runc", "", "berth-runc executable (default: next to berth-shim)")
	ready := fs.Bool("ready-fd", false, "report readiness on fd 3")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if o.Runc == "" {
		o.Runc = runcBinary
		if self, err := os.Executable(); err == nil {
			o.Runc = filepath.Join(filepath.Dir(self), runcBinary)
		}
	}
	if *ready {
		o.Ready = os.NewFile(3, "ready")
	}
	if err := monitor.Run(o); err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim: %v\n", err)
		return 1
	}
	return 0
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
