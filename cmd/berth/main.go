// Command berth is Berth's command-line client: docker's own command tree
// (github.com/docker/cli) and compose v5 (github.com/docker/compose/v5),
// pointed at berthd's Docker Engine-compatible API instead of dockerd's.
package main

import (
	"context"
	"os"
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:]))
}
