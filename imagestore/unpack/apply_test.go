package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/berth-dev/berth/internal/testutil"
)

func apply(t *testing.T, dir string, data []byte) (Stats, error) {
	t.Helper()
	return Apply(t.Context(), dir, bytes.NewReader(data), Options{NoChown: os.Geteuid() != 0})
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestApplyContent(t *testing.T) {
	s := newSandbox(t)
	outsideFile := filepath.Join(s.base, "victim")
	setuid := file("bin/su", "suid")
	setuid.mode = 0o4755
	data := buildTar(t,
		dir("etc/"),
		file("etc/hosts", "127.0.0.1 localhost\n"),
		file("/abs/file", "absolute names are relative to the layer"),
		file("implied/parent/file", "x"),
		setuid,
		symlink("etc/abs-link", "/etc/hosts"),
		symlink("etc/up-link", "../../../../etc/shadow"),
		hardlink("etc/hosts-link", "etc/hosts"),
		// A symlink to outside, then a regular file of the same name:
		// the file replaces the link, it is not written through it.
		symlink("replaced", outsideFile),
		file("replaced", "new content"),
		// A file replaced by a directory and a directory by a file.
		file("was-file", "x"),
		dir("was-file/"),
		file("was-file/child", "c"),
		dir("was-dir/"),
		file("was-dir/child", "c"),
		file("was-dir", "now a file"),
		ent{name: "ro-dir/", typ: '5', mode: 0o555},
	)
	before := s.outside(t)
	st, err := apply(t, s.layer, data)
	if err != nil {
		t.Fatalf("apply: %v", err)
	}
	if after := s.outside(t); after != before {
		t.Fatalf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	l := s.layer
	if got := readFile(t, filepath.Join(l, "etc/hosts")); got != "127.0.0.1 localhost\n" {
		t.Errorf("etc/hosts = %q", got)
	}
	if got := readFile(t, filepath.Join(l, "abs/file")); !strings.HasPrefix(got, "absolute") {
		t.Errorf("abs/file = %q", got)
	}
	if got := readFile(t, filepath.Join(l, "implied/parent/file")); got != "x" {
		t.Errorf("implied/parent/file = %q", got)
	}
	for link, want := range map[string]string{"etc/abs-link": "/etc/hosts", "etc/up-link": "../../../../etc/shadow"} {
		if got, err := os.Readlink(filepath.Join(l, link)); err != nil || got != want {
			t.Errorf("readlink %s = %q, %v; want %q", link, got, err, want)
		}
	}
	var a, b syscall.Stat_t
	if err := syscall.Lstat(filepath.Join(l, "etc/hosts"), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Lstat(filepath.Join(l, "etc/hosts-link"), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link: inodes %d/%d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	fi, err := os.Lstat(filepath.Join(l, "replaced"))
	if err != nil || !fi.Mode().IsRegular() || readFile(t, filepath.Join(l, "replaced")) != "new content" {
		t.Errorf("replaced: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(l, "was-file")); err != nil || !fi.IsDir() {
		t.Errorf("was-file should be a dir: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(l, "was-dir")); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("was-dir should be a file: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(l, "bin/su")); err != nil || fi.Mode()&os.ModeSetuid == 0 || fi.Mode().Perm() != 0o755 {
		t.Errorf("bin/su mode: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(l, "ro-dir")); err != nil || fi.Mode().Perm() != 0o555 {
		t.Errorf("ro-dir mode: %v %v", fi, err)
	}
	// Directory times are set after their children were written.
	for _, p := range []string{"etc", "etc/hosts", "was-file", "etc/abs-link"} {
		fi, err := os.Lstat(filepath.Join(l, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.ModTime().Equal(testTime) {
			t.Errorf("mtime of %s = %v, want %v", p, fi.ModTime(), testTime)
		}
	}
	testutil.CheckDu(t, l, st.Bytes, st.Inodes)
}

func TestApplyHostile(t *testing.T) {
	for _, tc := range []struct {
		name  string
		ents  func(s sandbox) []ent
		entry string // the entry the error must name
	}{
		{"dotdot", func(sandbox) []ent { return []ent{file("../evil", "x")} }, "../evil"},
		{"dotdot-deep", func(sandbox) []ent { return []ent{file("../../evil", "x")} }, "../../evil"},
		{"dotdot-inside-path", func(sandbox) []ent { return []ent{dir("a/"), file("a/../../evil", "x")} }, "a/../../evil"},
		{"absolute-escape", func(sandbox) []ent { return []ent{file("/../../evil", "x")} }, "/../../evil"},
		{"dotdot-dir", func(sandbox) []ent { return []ent{dir("../evil-dir/")} }, "../evil-dir/"},
		{"dotdot-symlink", func(sandbox) []ent { return []ent{symlink("../evil-link", "/etc")} }, "../evil-link"},
		{"file-through-abs-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", s.base), file("a/evil", "x")}
		}, "a/evil"},
		{"file-through-etc-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", "/etc"), file("a/berth-unpack-test-evil", "x")}
		}, "a/berth-unpack-test-evil"},
		{"file-through-relative-symlink", func(sandbox) []ent {
			return []ent{symlink("a", "../../.."), file("a/evil", "x")}
		}, "a/evil"},
		{"overwrite-through-symlink", func(sandbox) []ent {
			return []ent{symlink("a", ".."), file("a/victim", "pwned")}
		}, "a/victim"},
		{"file-through-nested-symlink", func(s sandbox) []ent {
			return []ent{dir("d/"), symlink("d/up", s.base), file("d/up/evil", "x")}
		}, "d/up/evil"},
		{"file-through-inner-symlink", func(sandbox) []ent {
			// Even a symlink that stays inside is never followed.
			return []ent{dir("d/"), symlink("s", "d"), file("s/evil", "x")}
		}, "s/evil"},
		{"dir-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", s.base), dir("a/evil-dir/")}
		}, "a/evil-dir/"},
		{"symlink-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", s.base), symlink("a/evil-link", "/")}
		}, "a/evil-link"},
		{"hardlink-outside", func(sandbox) []ent { return []ent{hardlink("l", "../victim")} }, "l"},
		{"hardlink-outside-absolute", func(sandbox) []ent { return []ent{hardlink("l", "/../../../victim")} }, "l"},
		{"hardlink-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", filepath.Dir(s.layer)), hardlink("l", "a/victim")}
		}, "l"},
		{"hardlink-through-relative-symlink", func(sandbox) []ent {
			return []ent{symlink("a", ".."), hardlink("l", "a/victim")}
		}, "l"},
		{"hardlink-missing-target", func(sandbox) []ent { return []ent{hardlink("l", "nope")} }, "l"},
		{"hardlink-into-symlinked-dir", func(s sandbox) []ent {
			return []ent{file("f", "x"), symlink("a", s.base), hardlink("a/l", "f")}
		}, "a/l"},
		{"whiteout-outside", func(sandbox) []ent { return []ent{file("../.wh.victim", "")} }, "../.wh.victim"},
		{"whiteout-dotdot", func(sandbox) []ent { return []ent{file(".wh...", "")} }, ".wh..."},
		{"whiteout-dot", func(sandbox) []ent { return []ent{file("d/.wh..", "")} }, "d/.wh.."},
		{"whiteout-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", filepath.Dir(s.layer)), file("a/.wh.victim", "")}
		}, "a/.wh.victim"},
		{"opaque-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", s.base), file("a/.wh..wh..opq", "")}
		}, "a/.wh..wh..opq"},
		{"device-through-symlink", func(s sandbox) []ent {
			return []ent{symlink("a", s.base), {name: "a/fifo", typ: '6', mode: 0o644}}
		}, "a/fifo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSandbox(t)
			before := s.outside(t)
			_, err := apply(t, s.layer, buildTar(t, tc.ents(s)...))
			if err == nil {
				t.Fatal("hostile layer accepted")
			}
			t.Log(err)
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Errorf("error is not InvalidArgument: %v", err)
			}
			if !strings.Contains(err.Error(), strconv.Quote(tc.entry)) {
				t.Errorf("error does not name entry %q: %v", tc.entry, err)
			}
			if after := s.outside(t); after != before {
				t.Fatalf("outside changed:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			if _, err := os.Lstat("/etc/berth-unpack-test-evil"); err == nil {
				t.Fatal("/etc/berth-unpack-test-evil was created")
			}
		})
	}
}

func TestApplyCanceled(t *testing.T) {
	s := newSandbox(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Apply(ctx, s.layer, bytes.NewReader(buildTar(t, file("a", "b"))), Options{NoChown: true})
	if err == nil {
		t.Fatal("apply with a canceled context succeeded")
	}
}

func TestApplyTruncated(t *testing.T) {
	s := newSandbox(t)
	data := buildTar(t, file("a", strings.Repeat("x", 5000)))
	_, err := apply(t, s.layer, data[:2000])
	if err == nil {
		t.Fatal("truncated tar accepted")
	}
}

func TestDecompress(t *testing.T) {
	plain := buildTar(t, file("a", strings.Repeat("hello ", 1000)))
	var gz, zs bytes.Buffer
	gw := gzip.NewWriter(&gz)
	gw.Write(plain)
	gw.Close()
	zw, err := zstd.NewWriter(&zs)
	if err != nil {
		t.Fatal(err)
	}
	zw.Write(plain)
	zw.Close()
	for name, in := range map[string][]byte{"plain": plain, "gzip": gz.Bytes(), "zstd": zs.Bytes(), "empty": nil} {
		t.Run(name, func(t *testing.T) {
			rc, err := Decompress(bytes.NewReader(in))
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil {
				t.Fatal(err)
			}
			want := plain
			if name == "empty" {
				want = nil
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got %d bytes, want %d", len(got), len(want))
			}
		})
	}
	if _, err := Decompress(bytes.NewReader([]byte{0x1f, 0x8b, 0, 0})); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("corrupt gzip: %v", err)
	}
}

// TestApplyRootEntryAndUmask: a "./" entry sets the layer root's mode, and
// implied parents are 0755 whatever the umask.
func TestApplyRootEntryAndUmask(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	layer := filepath.Join(t.TempDir(), "layer")
	if err := os.Mkdir(layer, 0o755); err != nil {
		t.Fatal(err)
	}
	root := dir("./")
	root.mode = 0o750
	if _, err := apply(t, layer, buildTar(t, root, file("a/b/c", "x"))); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{".": 0o750, "a": 0o755, "a/b": 0o755, "a/b/c": 0o644} {
		fi, err := os.Lstat(filepath.Join(layer, p))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %o, want %o", p, fi.Mode().Perm(), want)
		}
	}
	if fi, _ := os.Lstat(layer); !fi.ModTime().Equal(testTime) {
		t.Errorf("layer root mtime %v, want %v", fi.ModTime(), testTime)
	}
}

// Plain archives (build contexts, ADD's local tars): ".wh." names are
// files, and absolute names, "..", device nodes and sparse files are
// refused, naming the entry.
func TestApplyPlain(t *testing.T) {
	plain := func(data []byte) (string, error) {
		s := newSandbox(t)
		_, err := Apply(t.Context(), s.layer, bytes.NewReader(data), Options{NoChown: true, Plain: true})
		return s.layer, err
	}
	root, err := plain(buildTar(t, file(".wh.file", "kept"), dir("a/"), file("a/b", "b")))
	if err != nil || readFile(t, filepath.Join(root, ".wh.file")) != "kept" {
		t.Fatalf("a .wh. name in a plain archive: %v", err)
	}
	char := ent{name: "null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3}
	for name, data := range map[string][]byte{
		"absolute": buildTar(t, file("/etc/x", "x")),
		"dotdot":   buildTar(t, dir("a/"), file("a/../../x", "x")),
		"device":   buildTar(t, char),
		"link up":  buildTar(t, hardlink("h", "../x")),
		"sparse":   testutil.SparseTar("sparse", 1000000000000),
	} {
		if _, err := plain(data); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestApplySparseRefused: a sparse entry in a layer, in any of GNU's
// encodings, fails the unpack at its header (a few KiB that read as 1 TB
// of zeros), naming the entry, with nothing written.
func TestApplySparseRefused(t *testing.T) {
	const tb = 1000000000000
	for name, data := range map[string][]byte{
		"pax 1.0":  testutil.SparseTar("big", tb),
		"pax 0.1":  testutil.SparseTarPAX01("big", tb),
		"old gnu":  testutil.SparseTarOldGNU("big", tb),
		"in a dir": append(buildTar(t, dir("d/"))[:512], testutil.SparseTar("d/big", tb)...),
	} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			_, err := apply(t, s.layer, data)
			t.Log(err)
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "sparse") || !strings.Contains(err.Error(), "big") {
				t.Fatalf("sparse entry: %v, want an invalid argument naming it", err)
			}
			if _, err := os.Lstat(filepath.Join(s.layer, "big")); !os.IsNotExist(err) {
				t.Errorf("the sparse file was created: %v", err)
			}
		})
	}
}
