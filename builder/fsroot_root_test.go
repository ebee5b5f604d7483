package builder

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// existsInLowers reads the union of layer dirs as overlay does: the top
// layer's whiteout or opaque dir hides the lower ones, and a symlink on the
// way makes the answer unsure.
func TestExistsInLowers(t *testing.T) {
	testutil.RequireRoot(t, "whiteouts are 0:0 character devices, opaque dirs trusted xattrs")
	base, top := t.TempDir(), t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	testutil.WriteFiles(t, base, map[string]string{"a/b/c": "x", "keep/f": "x", "opq/old": "x", "gone/f": "x"})
	must(os.Symlink("/a", filepath.Join(base, "link")))
	must(os.MkdirAll(filepath.Join(top, "opq"), 0o755))
	must(unix.Setxattr(filepath.Join(top, "opq"), "trusted.overlay.opaque", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(top, "opq", "new"), nil, 0o644))
	must(unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0))
	lowers := []string{top, base}
	for rel, want := range map[string][2]bool{
		"/":       {true, true},
		"a/b/c":   {true, true},
		"a/b/d":   {false, true},
		"keep":    {true, true},
		"opq/new": {true, true},
		"opq/old": {false, true},
		"gone":    {false, true},
		"gone/f":  {false, true},
		"link":    {true, true},
		"link/b":  {false, false},
		"a/b/c/d": {false, true},
		"nowhere": {false, true},
	} {
		exists, sure := existsInLowers(lowers, rel)
		if [2]bool{exists, sure} != want {
			t.Errorf("%s: exists %v sure %v, want %v", rel, exists, sure, want)
		}
	}
}
