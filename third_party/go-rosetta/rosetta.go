// Package rosetta stands in for github.com/tonistiigi/go-rosetta, which the
// Go module proxy on Berth's build machines refuses. docker/cli's system
// commands ask it whether Apple's Rosetta translates the binary: it never
// does on Linux, which is all Berth runs on.
package rosetta

// Enabled reports whether the process runs under Rosetta: never on Linux.
func Enabled() bool { return false }

// Available reports whether Rosetta is installed: never on Linux.
func Available() bool { return false }

// NativeArch is the host's architecture as Rosetta reports it: unknown.
func NativeArch() string { return "" }
