package archive

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// FuzzExtract feeds arbitrary tars to Extract: whatever it does with
// them, nothing appears outside the root.
func FuzzExtract(f *testing.F) {
	seed := func(es ...tar.Header) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		for _, h := range es {
			if h.Typeflag == tar.TypeReg {
				h.Size = 1
			}
			tw.WriteHeader(&h)
			if h.Typeflag == tar.TypeReg {
				tw.Write([]byte("x"))
			}
		}
		tw.Close()
		return b.Bytes()
	}
	f.Add(seed(tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(seed(tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(seed(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}, tar.Header{Name: "l/../../escape", Typeflag: tar.TypeReg}))
	f.Add(seed(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../.."}, tar.Header{Name: "l/escape", Typeflag: tar.TypeReg}))
	f.Add(seed(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../../etc/passwd"}))
	f.Add(seed(tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "d", Typeflag: tar.TypeReg}))
	f.Fuzz(func(t *testing.T, data []byte) {
		outer := t.TempDir()
		root := filepath.Join(outer, "root")
		if err := os.MkdirAll(filepath.Join(root, "dst"), 0o755); err != nil {
			t.Fatal(err)
		}
		_ = Extract(t.Context(), root, "/dst", bytes.NewReader(data), ExtractOptions{Owner: &Owner{UID: os.Getuid(), GID: os.Getgid()}})
		ents, err := os.ReadDir(outer)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "root" {
				t.Fatalf("an entry left the root: %s", e.Name())
			}
		}
	})
}
