package testutil

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMissing runs a test that lacks a prerequisite in a child process,
// once as a developer would and once under CI, and checks the verdict.
func TestMissing(t *testing.T) {
	if os.Getenv("BERTH_TESTUTIL_CHILD") != "" {
		LookPath(t, "no-such-tool-berth-test", "nothing installs it")
		t.Log("reached after a missing tool")
		return
	}
	for _, tc := range []struct {
		ci       string
		wantFail bool
		wantOut  string
	}{
		{ci: "", wantFail: false, wantOut: "--- SKIP"},
		{ci: "true", wantFail: true, wantOut: "missing prerequisite under CI: no-such-tool-berth-test not found"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMissing$", "-test.v")
		cmd.Env = append(os.Environ(), "BERTH_TESTUTIL_CHILD=1", "CI="+tc.ci)
		out, err := cmd.CombinedOutput()
		if failed := err != nil; failed != tc.wantFail {
			t.Errorf("CI=%q: failed = %v, want %v\n%s", tc.ci, failed, tc.wantFail, out)
		}
		if !strings.Contains(string(out), tc.wantOut) {
			t.Errorf("CI=%q: output lacks %q:\n%s", tc.ci, tc.wantOut, out)
		}
		if strings.Contains(string(out), "reached after") {
			t.Errorf("CI=%q: the test went on after the missing tool:\n%s", tc.ci, out)
		}
	}
}
