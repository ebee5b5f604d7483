package shim

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// RuncName is berth-shim's libcontainer helper, which the shim runs from
// its own directory.
const RuncName = "berth-runc"

// Check reports why the berth-shim at binary cannot run containers: it,
// or the berth-runc beside it, is missing or not an executable file. nil
// means both are in place (it does not run them).
func Check(binary string) error {
	for _, p := range []string{binary, filepath.Join(filepath.Dir(binary), RuncName)} {
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return fmt.Errorf("%s: %w: %w", p, errdefs.ErrNotFound, err)
		case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
			return fmt.Errorf("%s: %w: not an executable file (mode %v)", p, errdefs.ErrFailedPrecondition, fi.Mode())
		}
	}
	return nil
}
