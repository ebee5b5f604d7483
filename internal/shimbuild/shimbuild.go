// Package shimbuild builds the shim pair for tests that run containers:
// berth-shim (the small monitor, CGO_ENABLED=0) and berth-runc (its
// libcontainer helper, cgo with -tags seccomp) into one directory, as
// `make build` does; berth-shim finds berth-runc next to itself.
package shimbuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Names of the two binaries.
const (
	Shim = "berth-shim"
	Runc = "berth-runc"
)

// PrebuiltEnv names a prebuilt berth-shim (stripped, instrumented) to test
// instead; the berth-runc next to it is taken along.
const PrebuiltEnv = "BERTH_TEST_SHIM"

// Build puts berth-shim and berth-runc into dir and returns berth-shim's
// path. It must run inside the module (a test's working directory is).
func Build(dir string) (string, error) {
	shim := filepath.Join(dir, Shim)
	runc := filepath.Join(dir, Runc)
	var cmds []*exec.Cmd
	if pre := os.Getenv(PrebuiltEnv); pre != "" {
		// Copied, not linked: leftover checks find processes by the
		// executable's directory.
		cmds = append(cmds, exec.Command("cp", pre, shim), exec.Command("cp", filepath.Join(filepath.Dir(pre), Runc), runc))
	} else {
		s := exec.Command("go", "build", "-o", shim, "github.com/berth-dev/berth/cmd/berth-shim")
		s.Env = append(os.Environ(), "CGO_ENABLED=0")
		// As the Makefile builds it: static, see cmd/berth-runc.
		r := exec.Command("go", "build", "-tags", "seccomp netgo osusergo", "-ldflags", "-extldflags -static", "-o", runc, "github.com/berth-dev/berth/cmd/berth-runc")
		r.Env = append(os.Environ(), "CGO_ENABLED=1")
		cmds = append(cmds, s, r)
	}
	for _, c := range cmds {
		if out, err := c.CombinedOutput(); err != nil {
			return "", fmt.Errorf("%s: %v: %s", c, err, out)
		}
	}
	return shim, nil
}
