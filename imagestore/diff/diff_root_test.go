package diff

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore/unpack"
)

// An upper dir as overlay leaves it (a whiteout device, an opaque dir,
// overlay's bookkeeping xattrs, a hard link, a symlink, a fifo) gives the
// OCI entries, and unpacking them gives back the same upper dir.
func TestWriteUpperDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("whiteout devices and trusted xattrs need root")
	}
	upper := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(upper, "etc/opaque"), 0o750))
	must(unix.Setxattr(filepath.Join(upper, "etc/opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	must(unix.Setxattr(filepath.Join(upper, "etc"), "trusted.overlay.impure", []byte("y"), 0))
	must(os.WriteFile(filepath.Join(upper, "etc/opaque/a"), []byte("a\n"), 0o600))
	must(unix.Mknod(filepath.Join(upper, "etc/gone"), unix.S_IFCHR, 0))
	must(os.WriteFile(filepath.Join(upper, "etc/file"), []byte("file\n"), 0o644))
	must(unix.Setxattr(filepath.Join(upper, "etc/file"), "user.note", []byte("kept"), 0))
	must(unix.Setxattr(filepath.Join(upper, "etc/file"), "trusted.overlay.origin", []byte("x"), 0))
	must(os.Link(filepath.Join(upper, "etc/file"), filepath.Join(upper, "hard")))
	must(os.Symlink("/etc/file", filepath.Join(upper, "sym")))
	must(unix.Mkfifo(filepath.Join(upper, "fifo"), 0o644))

	var buf bytes.Buffer
	st, err := Write(t.Context(), upper, &buf, Options{Clean: true})
	must(err)
	want := map[string]byte{
		"etc/":                    tar.TypeDir,
		"etc/file":                tar.TypeReg,
		"etc/.wh.gone":            tar.TypeReg,
		"etc/opaque/":             tar.TypeDir,
		"etc/opaque/.wh..wh..opq": tar.TypeReg,
		"etc/opaque/a":            tar.TypeReg,
		"fifo":                    tar.TypeFifo,
		"hard":                    tar.TypeLink,
		"sym":                     tar.TypeSymlink,
	}
	tr := tar.NewReader(bytes.NewReader(buf.Bytes()))
	var order []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		order = append(order, h.Name)
		typ, ok := want[h.Name]
		if !ok || typ != h.Typeflag {
			t.Errorf("unexpected entry %q type %c", h.Name, h.Typeflag)
		}
		delete(want, h.Name)
		switch h.Name {
		case "etc/file":
			if h.PAXRecords["SCHILY.xattr.user.note"] != "kept" || h.PAXRecords["SCHILY.xattr.trusted.overlay.origin"] != "" {
				t.Errorf("xattrs of etc/file: %v", h.PAXRecords)
			}
		case "hard":
			if h.Linkname != "etc/file" {
				t.Errorf("hard link to %q", h.Linkname)
			}
		case "etc/opaque/":
			if h.Mode&0o777 != 0o750 {
				t.Errorf("etc/opaque mode %o", h.Mode)
			}
		}
	}
	if len(want) != 0 || st.Entries != len(order) {
		t.Fatalf("missing entries %v (wrote %d: %v)", want, st.Entries, order)
	}
	// The opaque marker comes right after its directory.
	for i, n := range order {
		if n == "etc/opaque/" && (i+1 >= len(order) || order[i+1] != "etc/opaque/.wh..wh..opq") {
			t.Fatalf("opaque marker not right after its dir: %v", order)
		}
	}
	// Clean dropped overlay's bookkeeping, kept the opaque marker.
	if _, err := getXattr(filepath.Join(upper, "etc/file"), "trusted.overlay.origin"); err == nil {
		t.Error("trusted.overlay.origin left on etc/file")
	}
	if _, err := getXattr(filepath.Join(upper, "etc"), "trusted.overlay.impure"); err == nil {
		t.Error("trusted.overlay.impure left on etc")
	}
	if v, err := getXattr(filepath.Join(upper, "etc/opaque"), "trusted.overlay.opaque"); err != nil || string(v) != "y" {
		t.Errorf("opaque marker removed: %q %v", v, err)
	}

	// Unpacked again, the tar gives the same tree (the round trip a pull
	// of the built image makes).
	back := t.TempDir()
	if _, err := unpack.Apply(t.Context(), back, bytes.NewReader(buf.Bytes()), unpack.Options{}); err != nil {
		t.Fatal(err)
	}
	var again bytes.Buffer
	if _, err := Write(t.Context(), back, &again, Options{}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Fatal("the unpacked layer does not write the same tar")
	}
	// An empty upper dir is no change.
	st, err = Write(t.Context(), t.TempDir(), io.Discard, Options{})
	if err != nil || st.Entries != 0 {
		t.Fatalf("empty upper: %+v %v", st, err)
	}
}
