package unpack

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// FuzzApply feeds arbitrary tar bytes to Apply and checks that nothing is
// created or changed outside the layer directory, whatever Apply returns.
func FuzzApply(f *testing.F) {
	seeds := [][]ent{
		{dir("a/"), file("a/b", "x"), symlink("a/l", "/etc"), hardlink("a/h", "a/b")},
		{symlink("a", "../.."), file("a/evil", "x")},
		{symlink("a", "/"), dir("a/tmp/")},
		{file("../evil", "x")},
		{hardlink("l", "../victim")},
		{file("x/.wh..wh..opq", ""), file("x/.wh.y", ""), file(".wh...", "")},
		{{name: "fifo", typ: '6', mode: 0o644}},
	}
	for _, s := range seeds {
		f.Add(buildTar(f, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newSandbox(t)
		before := s.outside(t)
		Apply(t.Context(), s.layer, bytes.NewReader(data), Options{NoChown: true})
		if after := s.outside(t); after != before {
			t.Fatalf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
		}
		// Nothing the layer made may be reachable from outside except
		// through the layer dir itself.
		filepath.WalkDir(s.layer, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type()&fs.ModeSymlink == 0 {
				if _, err := os.Lstat(p); err != nil {
					t.Errorf("walk %s: %v", p, err)
				}
			}
			return nil
		})
	})
}
