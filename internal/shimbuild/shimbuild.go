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
	"sync"
	"testing"
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

// Once builds the pair once per test binary, on the first test that needs
// it (only root tests that run containers pay for the build), into a temp
// dir that Remove deletes: call Remove from TestMain after m.Run.
type Once struct {
	once sync.Once
	path string
	err  error
}

// Path returns berth-shim's path, building the pair on the first call; a
// failed build fails every test that asks.
func (o *Once) Path(t testing.TB) string {
	t.Helper()
	o.once.Do(func() {
		dir, err := os.MkdirTemp("", "berth-shim-")
		if err != nil {
			o.err = err
			return
		}
		if o.path, err = Build(dir); err != nil {
			o.err = fmt.Errorf("build berth-shim: %w", err)
		}
	})
	if o.err != nil {
		t.Fatal(o.err)
	}
	return o.path
}

// Remove deletes what Path built, if anything.
func (o *Once) Remove() {
	if o.path != "" {
		os.RemoveAll(filepath.Dir(o.path))
	}
}
