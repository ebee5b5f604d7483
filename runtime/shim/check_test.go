package shim

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	shim, runc := filepath.Join(dir, "berth-shim"), filepath.Join(dir, RuncName)
	write := func(p string, mode os.FileMode) {
		t.Helper()
		if err := os.WriteFile(p, []byte("#!/bin/true\n"), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := Check(shim); !errdefs.IsNotFound(err) {
		t.Errorf("no shim: %v, want NotFound", err)
	}
	write(shim, 0o755)
	if err := Check(shim); !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), runc) {
		t.Errorf("no berth-runc: %v, want NotFound naming %s", err, runc)
	}
	write(runc, 0o644)
	if err := Check(shim); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("berth-runc not executable: %v, want FailedPrecondition", err)
	}
	write(runc, 0o755)
	if err := Check(shim); err != nil {
		t.Errorf("both in place: %v", err)
	}
}
