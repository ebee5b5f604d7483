package unpack

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

func TestApplyRootSpecial(t *testing.T) {
	testutil.RequireRoot(t, "device nodes, chown and trusted.* xattrs")
	s := newSandbox(t)
	owned := file("home/user/file", "mine")
	owned.uid, owned.gid = 1234, 5678
	ownedLink := symlink("home/user/link", "file")
	ownedLink.uid, ownedLink.gid = 1234, 5678
	suid := file("bin/suid", "x")
	suid.mode, suid.uid = 0o4755, 1000
	withXattr := file("cap", "x")
	withXattr.xattrs = map[string]string{"user.comment": "hi", "trusted.berth": "t", "trusted.overlay.redirect": "/evil"}
	data := buildTar(t,
		owned, ownedLink, suid, withXattr,
		ent{name: "dev/null", typ: '3', mode: 0o666, major: 1, minor: 3},
		ent{name: "dev/loop0", typ: '4', mode: 0o660, major: 7, minor: 0},
		ent{name: "run/fifo", typ: '6', mode: 0o600},
		dir("etc/"),
		file("etc/.wh.passwd", ""),
		dir("opaque/"),
		file("opaque/.wh..wh..opq", ""),
		file("opaque/kept", "k"),
		file(".wh..wh..opq", ""),
	)
	st, err := Apply(t.Context(), s.layer, bytesReader(data), Options{})
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	l := s.layer
	stat := func(p string) syscall.Stat_t {
		t.Helper()
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(l, p), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	for _, p := range []string{"home/user/file", "home/user/link"} {
		if st := stat(p); st.Uid != 1234 || st.Gid != 5678 {
			t.Errorf("%s owned by %d:%d", p, st.Uid, st.Gid)
		}
	}
	if st := stat("bin/suid"); st.Mode&0o7777 != 0o4755 || st.Uid != 1000 {
		t.Errorf("bin/suid mode %o uid %d: chown must not clear setuid", st.Mode&0o7777, st.Uid)
	}
	for p, want := range map[string]struct {
		typ  uint32
		dev  uint64
		perm uint32
	}{
		"dev/null":   {syscall.S_IFCHR, unix.Mkdev(1, 3), 0o666},
		"dev/loop0":  {syscall.S_IFBLK, unix.Mkdev(7, 0), 0o660},
		"run/fifo":   {syscall.S_IFIFO, 0, 0o600},
		"etc/passwd": {syscall.S_IFCHR, 0, 0}, // overlay whiteout
	} {
		st := stat(p)
		if st.Mode&syscall.S_IFMT != want.typ || st.Rdev != want.dev || st.Mode&0o7777 != want.perm {
			t.Errorf("%s: mode %o rdev %d, want type %o rdev %d perm %o", p, st.Mode, st.Rdev, want.typ, want.dev, want.perm)
		}
	}
	if _, err := os.Lstat(filepath.Join(l, "etc/.wh.passwd")); !os.IsNotExist(err) {
		t.Errorf("whiteout marker written as a file: %v", err)
	}
	xattr := func(p, name string) string {
		buf := make([]byte, 256)
		n, err := unix.Lgetxattr(filepath.Join(l, p), name, buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
	for p, want := range map[string]string{"opaque": "y", ".": "y", "etc": ""} {
		if got := xattr(p, "trusted.overlay.opaque"); got != want {
			t.Errorf("%s opaque xattr = %q, want %q", p, got, want)
		}
	}
	if got := readFile(t, filepath.Join(l, "opaque/kept")); got != "k" {
		t.Errorf("opaque/kept = %q", got)
	}
	if got := xattr("cap", "trusted.berth"); got != "t" {
		t.Errorf("trusted.berth = %q", got)
	}
	if got := xattr("cap", "trusted.overlay.redirect"); got != "" {
		t.Errorf("layer set overlay's own xattr: %q", got)
	}
	if got := xattr("cap", "user.comment"); got != "hi" {
		t.Logf("user.comment = %q (filesystem may lack user xattrs)", got)
	}
	testutil.CheckDu(t, l, st.Bytes, st.Inodes)
}
