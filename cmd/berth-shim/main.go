// Command berth-shim is the per-container monitor berthd starts (see
// runtime/shim/monitor) and, re-executed by libcontainer, the container's
// init. Build it with cgo and -tags seccomp.
//
//	berth-shim run --id ID --bundle DIR --state-dir DIR [--log-path FILE] [--stdin] [--create-only]
//	berth-shim pause
package main

import (
	"flag"
	"fmt"
	"os"
	goruntime "runtime"
	"runtime/debug"

	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"

	"github.com/berth-dev/berth/runtime/shim/monitor"
)

// init, not main: libcontainer's init must run before anything else in
// the re-executed binary (nsenter's C constructor has already run).
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

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

func run(args []string) int {
	var o monitor.Options
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&o.ID, "id", "", "container id")
	fs.StringVar(&o.Bundle, "bundle", "", "OCI bundle directory")
	fs.StringVar(&o.StateDir, "state-dir", "", "state directory (socket, exit file)")
	fs.StringVar(&o.LogPath, "log-path", "", "CRI log file")
	fs.BoolVar(&o.Stdin, "stdin", false, "keep the container's stdin open for attach")
	fs.BoolVar(&o.CreateOnly, "create-only", false, "wait for a start request before running the process")
	ready := fs.Bool("ready-fd", false, "report readiness on fd 3")
	if err := fs.Parse(args); err != nil {
		return 2
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
