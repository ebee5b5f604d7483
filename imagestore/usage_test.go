package imagestore

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// duRoot runs du(1) on root, staying on its filesystem (-x): the figures
// Usage must agree with.
func duRoot(t *testing.T, root string) Usage {
	t.Helper()
	field := func(args ...string) uint64 {
		out, err := exec.Command("du", append(args, root)...).Output()
		if err != nil {
			testutil.Missing(t, "du (coreutils) not usable here: %v", err)
		}
		n, err := strconv.ParseUint(strings.Fields(string(out))[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return Usage{Bytes: field("-sxb"), Inodes: field("-sx", "--inodes")}
}
