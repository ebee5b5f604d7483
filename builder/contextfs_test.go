package builder

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

var ctxTime = time.Unix(1700000000, 123456789)

type ctxEnt struct {
	name, body, link string
	typ              byte
	mode             int64
}

func ctxTar(t *testing.T, ents ...ctxEnt) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, ModTime: ctxTime, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return buf.Bytes()
}

func readCtx(t *testing.T, data []byte) *ctxFS {
	t.Helper()
	c, err := readContext(t.Context(), bytes.NewReader(data), filepath.Join(t.TempDir(), "spool"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func reg(name, body string) ctxEnt { return ctxEnt{name: name, body: body, typ: tar.TypeReg} }
func sym(name, target string) ctxEnt {
	return ctxEnt{name: name, link: target, typ: tar.TypeSymlink, mode: 0o777}
}

// TestContextLookup: paths of the context resolve as openat2 with
// RESOLVE_IN_ROOT resolves them in an extracted tree: symlinks (relative,
// absolute, chained) stay inside, ".." stops at the root, a loop is
// ELOOP, a file is not a directory.
func TestContextLookup(t *testing.T) {
	c := readCtx(t, ctxTar(t,
		ctxEnt{name: "d/", typ: tar.TypeDir, mode: 0o750},
		reg("d/f", "in d\n"),
		sym("rel", "d"), sym("abs", "/d/f"), sym("up", "../../../d"), sym("chain", "rel/f"),
		sym("out", "/etc/passwd"), sym("loop1", "loop2"), sym("loop2", "loop1"),
		reg("top", "top\n"),
	))
	for rel, want := range map[string]string{"d/f": "in d\n", "rel/f": "in d\n", "abs": "in d\n", "up/f": "in d\n", "chain": "in d\n", "d/../top": "top\n", "../../top": "top\n"} {
		if b, err := c.readFile(rel, 100); err != nil || string(b) != want {
			t.Errorf("read %s: %q %v, want %q", rel, b, err, want)
		}
	}
	for rel, want := range map[string]unix.Errno{"out": unix.ENOENT, "loop1": unix.ELOOP, "top/x": unix.ENOTDIR, "nope": unix.ENOENT} {
		if _, err := c.stat(rel, true); !errors.Is(err, want) {
			t.Errorf("stat %s: %v, want %v", rel, err, want)
		}
	}
	if st, err := c.stat("rel", false); err != nil || st.Mode&unix.S_IFMT != unix.S_IFLNK {
		t.Errorf("lstat rel: %o %v", st.Mode, err)
	}
	if st, err := c.stat("rel", true); err != nil || st.Mode != unix.S_IFDIR|0o750 {
		t.Errorf("stat rel: %o %v", st.Mode, err)
	}
	if st, _ := c.stat("d/f", false); st.Size != 5 || st.Mtim != unix.NsecToTimespec(ctxTime.UnixNano()) {
		t.Errorf("stat d/f: size %d mtime %v", st.Size, st.Mtim)
	}
	if _, err := c.readFile("top", 3); !errdefs.IsInvalidArgument(err) {
		t.Errorf("read over the limit: %v", err)
	}
	if _, err := c.readFile("d", 100); !errdefs.IsInvalidArgument(err) {
		t.Errorf("read a directory: %v", err)
	}
	ents, err := c.readDir(".")
	var names []string
	for _, e := range ents {
		names = append(names, e.name)
	}
	if err != nil || strings.Join(names, " ") != "abs chain d loop1 loop2 out rel top up" {
		t.Errorf("readDir: %v %v", names, err)
	}
}

// TestContextTarSemantics: later entries replace earlier ones, a
// directory entry over a directory only updates it, parents are implied,
// hard links share one inode, and what unpacking a Plain archive refuses
// is refused here too, naming the entry.
func TestContextTarSemantics(t *testing.T) {
	c := readCtx(t, ctxTar(t,
		reg("a/b/c", "first\n"),
		reg("a/b/c", "second\n"),
		ctxEnt{name: "a/", typ: tar.TypeDir, mode: 0o700},
		reg("x", "x"), ctxEnt{name: "x/", typ: tar.TypeDir, mode: 0o755}, reg("x/y", "y"),
		reg("h1", "linked\n"), ctxEnt{name: "sub/h2", link: "h1", typ: tar.TypeLink},
		ctxEnt{name: "p", typ: tar.TypeFifo, mode: 0o600},
	))
	if b, _ := c.readFile("a/b/c", 100); string(b) != "second\n" {
		t.Errorf("a/b/c = %q, want the later entry", b)
	}
	if st, _ := c.stat("a", false); st.Mode != unix.S_IFDIR|0o700 {
		t.Errorf("a: mode %o, want the directory entry's", st.Mode)
	}
	if st, _ := c.stat("a/b", false); st.Mode != unix.S_IFDIR|0o755 {
		t.Errorf("implied a/b: mode %o", st.Mode)
	}
	if b, _ := c.readFile("x/y", 10); string(b) != "y" {
		t.Errorf("x replaced by a directory: x/y = %q", b)
	}
	h1, _ := c.stat("h1", false)
	h2, _ := c.stat("sub/h2", false)
	if h1.Ino != h2.Ino || h1.Nlink != 2 || h2.Nlink != 2 {
		t.Errorf("hard link: ino %d/%d nlink %d/%d", h1.Ino, h2.Ino, h1.Nlink, h2.Nlink)
	}
	if st, _ := c.stat("p", false); st.Mode != unix.S_IFIFO|0o600 {
		t.Errorf("fifo: mode %o", st.Mode)
	}

	var dev bytes.Buffer
	tw := tar.NewWriter(&dev)
	tw.WriteHeader(&tar.Header{Name: "null", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 3})
	tw.Close()
	for name, tc := range map[string]struct {
		data  []byte
		entry string
	}{
		"absolute":         {ctxTar(t, reg("/etc/x", "x")), "/etc/x"},
		"dotdot":           {ctxTar(t, reg("a/../../x", "x")), "a/../../x"},
		"through symlink":  {ctxTar(t, sym("l", "d"), ctxEnt{name: "d/", typ: tar.TypeDir}, reg("l/f", "x")), "l/f"},
		"under a file":     {ctxTar(t, reg("f", "x"), reg("f/g", "x")), "f/g"},
		"link to missing":  {ctxTar(t, ctxEnt{name: "h", link: "nope", typ: tar.TypeLink}), "h"},
		"link to dir":      {ctxTar(t, ctxEnt{name: "d/", typ: tar.TypeDir}, ctxEnt{name: "h", link: "d", typ: tar.TypeLink}), "h"},
		"link up":          {ctxTar(t, ctxEnt{name: "h", link: "../x", typ: tar.TypeLink}), "h"},
		"empty symlink":    {ctxTar(t, sym("l", "")), "l"},
		"device":           {dev.Bytes(), "null"},
		"sparse":           {testutil.SparseTar("big", 1<<40), "big"},
		"root not a dir":   {ctxTar(t, reg(".", "x")), "."},
		"not a tar at all": {[]byte(strings.Repeat("garbage ", 100)), ""},
	} {
		spool := filepath.Join(t.TempDir(), "spool")
		_, err := readContext(t.Context(), bytes.NewReader(tc.data), spool)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"`+tc.entry+`"`) && tc.entry != "" {
			t.Errorf("%s: %v, want an invalid argument naming %q", name, err, tc.entry)
		}
		if _, serr := os.Stat(spool); !os.IsNotExist(serr) {
			t.Errorf("%s: the spool was left", name)
		}
	}
}

// TestContextChecksum: the cache key of a COPY source changes with a
// file's content, name or mode and with what a symlink points at, not
// with times, and leaves out what .dockerignore and --exclude drop.
func TestContextChecksum(t *testing.T) {
	base := []ctxEnt{reg("src/a", "a"), reg("src/b.log", "log"), sym("src/l", "a")}
	sum := func(ents []ctxEnt, ignore, exclude []string) string {
		c := readCtx(t, ctxTar(t, ents...))
		var ig, ex *patternmatcher.PatternMatcher
		if ignore != nil {
			ig, _ = patternmatcher.New(ignore)
		}
		if exclude != nil {
			ex, _ = patternmatcher.New(exclude)
		}
		d, err := c.checksum("src", true, ig, ex)
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	with := func(i int, e ctxEnt) []ctxEnt {
		out := append([]ctxEnt(nil), base...)
		out[i] = e
		return out
	}
	orig := sum(base, nil, nil)
	if again := sum(base, nil, nil); again != orig {
		t.Fatal("the same context gave two checksums")
	}
	for name, ents := range map[string][]ctxEnt{
		"content": with(0, reg("src/a", "A")),
		"name":    with(0, reg("src/c", "a")),
		"mode":    with(0, ctxEnt{name: "src/a", body: "a", typ: tar.TypeReg, mode: 0o755}),
		"link":    with(2, sym("src/l", "b.log")),
	} {
		if sum(ents, nil, nil) == orig {
			t.Errorf("a change of %s left the checksum", name)
		}
	}
	if sum(with(1, reg("src/b.log", "other")), []string{"src/*.log"}, nil) != sum(base, []string{"src/*.log"}, nil) {
		t.Error("an ignored file changed the checksum")
	}
	if sum(with(1, reg("src/b.log", "other")), nil, []string{"*.log"}) != sum(base, nil, []string{"*.log"}) {
		t.Error("an excluded file changed the checksum")
	}
}

// TestContextMaterialize: written out, the context has its files, modes,
// times, symlinks and hard links, and root as owner.
func TestContextMaterialize(t *testing.T) {
	testutil.RequireRoot(t, "the files are chowned to root")
	c := readCtx(t, ctxTar(t,
		ctxEnt{name: "d/", typ: tar.TypeDir, mode: 0o750},
		ctxEnt{name: "d/x", body: "exec\n", typ: tar.TypeReg, mode: 0o755},
		sym("d/l", "x"), reg("h1", "linked\n"), ctxEnt{name: "h2", link: "h1", typ: tar.TypeLink},
	))
	dir := filepath.Join(t.TempDir(), "context")
	if err := c.materialize(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(filepath.Join(dir, "d/x"), &st); err != nil || st.Mode != unix.S_IFREG|0o755 || st.Uid != 0 || st.Mtim != unix.NsecToTimespec(ctxTime.UnixNano()) {
		t.Errorf("d/x: %+v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "d/x")); string(b) != "exec\n" {
		t.Errorf("d/x = %q", b)
	}
	if l, err := os.Readlink(filepath.Join(dir, "d/l")); err != nil || l != "x" {
		t.Errorf("d/l -> %q %v", l, err)
	}
	if err := unix.Lstat(filepath.Join(dir, "d"), &st); err != nil || st.Mode != unix.S_IFDIR|0o750 {
		t.Errorf("d: %o %v", st.Mode, err)
	}
	var a, b unix.Stat_t
	unix.Lstat(filepath.Join(dir, "h1"), &a)
	unix.Lstat(filepath.Join(dir, "h2"), &b)
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("hard link written as two files: %d %d nlink %d", a.Ino, b.Ino, a.Nlink)
	}
	// A second call does nothing more.
	if err := c.materialize(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
}
