package volume

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestCreateListRemove(t *testing.T) {
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Create(t.Context(), CreateOptions{Name: "data", Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Mountpoint != filepath.Join(root, "data", "_data") || v.Driver != "local" || v.Labels["k"] != "v" || v.CreatedAt.IsZero() {
		t.Errorf("created %+v", v)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Fatalf("no data dir: %v", err)
	}
	// Idempotent: the existing volume, untouched.
	again, err := s.Create(t.Context(), CreateOptions{Name: "data"})
	if err != nil || again.Labels["k"] != "v" {
		t.Errorf("second create: %+v %v", again, err)
	}
	os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("12345"), 0o644)
	if n, _ := s.Size("data"); n != 5 {
		t.Errorf("size %d", n)
	}
	// Reopened: the same volumes, with their labels.
	s2, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if l := s2.List(); len(l) != 1 || l[0].Name != "data" || l[0].Labels["k"] != "v" || !l[0].CreatedAt.Equal(v.CreatedAt) {
		t.Errorf("reopened: %+v", l)
	}
	// In use: refused without force, with docker's message.
	s2.Ref("data", "c1")
	s2.Ref("data", "c2")
	err = s2.Remove(t.Context(), "data", RemoveOptions{})
	if !errdefs.IsConflict(err) || err.Error() != "remove data: volume is in use - [c1, c2]" {
		t.Errorf("remove in use: %v", err)
	}
	s2.Unref("data", "c1")
	s2.Unref("data", "c2")
	if err := s2.Remove(t.Context(), "data", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "data")); !os.IsNotExist(err) {
		t.Errorf("volume dir left: %v", err)
	}
	if _, err := s2.Get("data"); !errdefs.IsNotFound(err) || err.Error() != "get data: no such volume" {
		t.Errorf("get removed: %v", err)
	}
	if err := s2.Remove(t.Context(), "data", RemoveOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("remove unknown: %v", err)
	}
	if err := s2.Remove(t.Context(), "data", RemoveOptions{Force: true}); err != nil {
		t.Errorf("force remove unknown: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		o    CreateOptions
		want string
	}{
		{CreateOptions{Name: "a"}, "volume name is too short"},
		{CreateOptions{Name: "a/b"}, `"a/b" includes invalid characters for a local volume name`},
		{CreateOptions{Name: "../x"}, "includes invalid characters"},
		{CreateOptions{Name: "ok", Options: map[string]string{"bogus": "1"}}, `invalid option: "bogus"`},
		{CreateOptions{Name: "ok", Options: map[string]string{"type": "tmpfs"}}, `missing required option: "device"`},
		{CreateOptions{Name: "ok", Options: map[string]string{"size": "1g"}}, "quota size requested but no quota support"},
		{CreateOptions{Name: "ok", Driver: "nfs"}, `plugin "nfs" not found`},
	} {
		if _, err := s.Create(t.Context(), c.o); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("create %+v: %v, want %q", c.o, err, c.want)
		}
	}
	if l := s.List(); len(l) != 0 {
		t.Errorf("bad creates left volumes: %+v", l)
	}
}

// TestCopyUp copies an image's tree into an empty volume with modes,
// owners, times and symlinks, and leaves a volume with content alone.
func TestCopyUp(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(src, "sub"), 0o750)
	os.WriteFile(filepath.Join(src, "sub", "f"), []byte("data"), 0o640)
	os.Symlink("sub/f", filepath.Join(src, "link"))
	syscall.Chmod(src, 0o1777)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(filepath.Join(src, "sub", "f"), mtime, mtime)
	if os.Geteuid() == 0 {
		os.Lchown(filepath.Join(src, "sub", "f"), 33, 44)
	}
	copied, err := CopyUp(src, dst)
	if err != nil || !copied {
		t.Fatalf("copy: %v %v", copied, err)
	}
	b, _ := os.ReadFile(filepath.Join(dst, "sub", "f"))
	fi, _ := os.Stat(filepath.Join(dst, "sub", "f"))
	if string(b) != "data" || fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Errorf("copied file %q mode %v mtime %v", b, fi.Mode(), fi.ModTime())
	}
	if os.Geteuid() == 0 {
		if st := fi.Sys().(*syscall.Stat_t); st.Uid != 33 || st.Gid != 44 {
			t.Errorf("owner %d:%d", st.Uid, st.Gid)
		}
	}
	if l, _ := os.Readlink(filepath.Join(dst, "link")); l != "sub/f" {
		t.Errorf("symlink %q", l)
	}
	if di, _ := os.Stat(dst); di.Mode()&os.ModeSticky == 0 || di.Mode().Perm() != 0o777 {
		t.Errorf("volume root mode %v", di.Mode())
	}
	// Not empty any more: nothing is copied again.
	os.WriteFile(filepath.Join(src, "new"), nil, 0o644)
	if copied, err := CopyUp(src, dst); err != nil || copied {
		t.Errorf("second copy: %v %v", copied, err)
	}
	if _, err := os.Stat(filepath.Join(dst, "new")); !os.IsNotExist(err) {
		t.Error("copied into a volume with content")
	}
	// Nothing at the mount point in the image: nothing to copy.
	if copied, err := CopyUp(filepath.Join(src, "absent"), t.TempDir()); err != nil || copied {
		t.Errorf("copy of a missing dir: %v %v", copied, err)
	}
}
