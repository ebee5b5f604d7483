package testutil

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// CheckDu compares bytes and inodes, as a store counted them for dir,
// with what du reports (apparent bytes, inodes). Without du it logs and
// compares nothing.
func CheckDu(t testing.TB, dir string, bytes, inodes int64) {
	t.Helper()
	if _, err := exec.LookPath("du"); err != nil {
		t.Log("du not installed; sizes not compared")
		return
	}
	for _, c := range []struct {
		args []string
		want int64
	}{{[]string{"-sb", dir}, bytes}, {[]string{"-s", "--inodes", dir}, inodes}} {
		out, err := exec.Command("du", c.args...).Output()
		if err != nil {
			t.Fatalf("du %v: %v", c.args, err)
		}
		got, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		if err != nil {
			t.Fatalf("du %v: %q: %v", c.args, out, err)
		}
		if got != c.want {
			t.Errorf("du %v = %d, counted %d", c.args, got, c.want)
		}
	}
}
