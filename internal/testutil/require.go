package testutil

import (
	"os"
	"os/exec"
	"testing"
)

// Missing stops a test whose prerequisite (root, a tool, a host file) this
// machine lacks. On a developer's machine the test skips; under CI (CI set,
// as .ci/run exports it) it fails, because `make deps` installs everything
// there and a skip would hide a test that never ran.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("missing prerequisite under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// RequireRoot stops the test (see Missing) unless it runs as root; why
// says what needs root.
func RequireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root: %s", why)
	}
}

// LookPath finds name in PATH or stops the test (see Missing); hint says
// how to install it.
func LookPath(t testing.TB, name, hint string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "%s not found (%s): %v", name, hint, err)
	}
	return p
}
