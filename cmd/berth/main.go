// Command berth is Berth's docker-like CLI, a client of berthd's Docker
// Engine-compatible API.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], streams{in: os.Stdin, out: os.Stdout, err: os.Stderr}, os.Getenv))
}
