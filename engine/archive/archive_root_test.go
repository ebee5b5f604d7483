package archive

import (
	"archive/tar"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestChanges: an upper dir as overlayfs leaves it (whiteouts, an opaque
// directory, copied-up parents) gives Docker's docker-diff list.
func TestChanges(t *testing.T) {
	testutil.RequireRoot(t, "overlay whiteouts are 0:0 device nodes and opaque markers trusted.* xattrs")
	lower, upper := t.TempDir(), t.TempDir()
	testutil.WriteFiles(t, lower, map[string]string{
		"etc/hostname": "box",
		"etc/passwd":   "root",
		"usr/bin/x":    "x",
		"var/lib/a":    "a",
		"opaque/old":   "old",
		"dev/x":        "x",
	})
	old := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, d := range []string{"etc", "usr", "usr/bin", "var", "var/lib", "opaque"} {
		if err := os.Chtimes(filepath.Join(lower, d), old, old); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WriteFiles(t, upper, map[string]string{
		"etc/passwd":  "changed",
		"tmp/new":     "new",
		"usr/bin/y":   "y",
		"opaque/new":  "n",
		"var/lib/new": "n",
	})
	if err := unix.Mknod(filepath.Join(upper, "etc/hostname"), syscall.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	// /var and /var/lib were copied up unchanged: same mode, size, mtime.
	for _, d := range []string{"var", "var/lib"} {
		fi, _ := os.Stat(filepath.Join(lower, d))
		if err := os.Chtimes(filepath.Join(upper, d), fi.ModTime(), fi.ModTime()); err != nil {
			t.Fatal(err)
		}
	}
	// The runtime's mount points are no change; /etc/hosts alone would
	// not make /etc one.
	testutil.WriteFiles(t, upper, map[string]string{"etc/hosts": "", "proc/.keep": "", "dev/shm/.keep": ""})
	for _, f := range []string{"proc/.keep", "dev/shm/.keep"} {
		if err := os.Remove(filepath.Join(upper, f)); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Changes(upper, []string{lower}, []string{"/etc/hosts", "/proc", "/dev/shm"})
	if err != nil {
		t.Fatal(err)
	}
	want := []container.FilesystemChange{
		{Path: "/etc", Kind: container.ChangeModify},
		{Path: "/etc/hostname", Kind: container.ChangeDelete},
		{Path: "/etc/passwd", Kind: container.ChangeModify},
		{Path: "/opaque", Kind: container.ChangeDelete},
		{Path: "/opaque/new", Kind: container.ChangeAdd},
		{Path: "/tmp", Kind: container.ChangeAdd},
		{Path: "/tmp/new", Kind: container.ChangeAdd},
		{Path: "/usr", Kind: container.ChangeModify},
		{Path: "/usr/bin", Kind: container.ChangeModify},
		{Path: "/usr/bin/y", Kind: container.ChangeAdd},
		{Path: "/var/lib", Kind: container.ChangeModify},
		{Path: "/var/lib/new", Kind: container.ChangeAdd},
	}
	if !slices.Equal(got, want) {
		t.Errorf("changes:\n got  %v\n want %v", got, want)
	}
}

// TestExtractOwnerAndDevices: copyUIDGID's owner replaces the tar's, and
// device nodes and fifos are made as the tar says.
func TestExtractOwnerAndDevices(t *testing.T) {
	testutil.RequireRoot(t, "chown and mknod")
	root := tree(t)
	err := Extract(t.Context(), root, "/data", mkTar(t,
		tarEntry{hdr: tar.Header{Name: "owned", Uid: 5, Gid: 6, Mode: 0o4755}, body: "x"},
		tarEntry{hdr: tar.Header{Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666}},
		tarEntry{hdr: tar.Header{Name: "fifo", Typeflag: tar.TypeFifo, Mode: 0o600}},
	), ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(filepath.Join(root, "data/owned"))
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 5 || st.Gid != 6 || fi.Mode()&os.ModeSetuid == 0 {
		t.Errorf("owned: %d:%d %v", st.Uid, st.Gid, fi.Mode())
	}
	fi, _ = os.Lstat(filepath.Join(root, "data/null"))
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeCharDevice == 0 || st.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("null: %v %d", fi.Mode(), st.Rdev)
	}
	if fi, _ := os.Lstat(filepath.Join(root, "data/fifo")); fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo: %v", fi.Mode())
	}

	err = Extract(t.Context(), root, "/data", mkTar(t,
		tarEntry{hdr: tar.Header{Name: "mine/", Typeflag: tar.TypeDir, Uid: 5, Gid: 6, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "mine/f", Uid: 5, Gid: 6}, body: "x"},
		tarEntry{hdr: tar.Header{Name: "mine/l", Typeflag: tar.TypeSymlink, Linkname: "f", Uid: 5, Gid: 6}},
	), ExtractOptions{Owner: &Owner{UID: 1000, GID: 1001}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/mine", "data/mine/f", "data/mine/l"} {
		fi, _ := os.Lstat(filepath.Join(root, p))
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 1000 || st.Gid != 1001 {
			t.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
	}
}
