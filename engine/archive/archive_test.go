package archive

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/testutil"
)

// tree makes a small container root: files, a directory, an absolute
// symlink to a directory and one to a host path that must never be
// followed out of the root.
func tree(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	testutil.WriteFiles(t, root, map[string]string{
		"etc/passwd":   "root:x:0:0::/root:/bin/sh\n",
		"etc/hostname": "box\n",
		"data/a/b":     "deep",
	})
	for link, target := range map[string]string{
		"etclink":     "/etc",
		"hostlink":    "/../../../../../../../etc",
		"data/rel":    "../etc/hostname",
		"data/broken": "/nowhere/file",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(root, "data/a/b"), filepath.Join(root, "data/hard")); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestStat(t *testing.T) {
	root := tree(t)
	for _, tc := range []struct {
		path, name, link string
		dir, symlink     bool
		size             int64
	}{
		{path: "/etc/hostname", name: "hostname", size: 4},
		{path: "etc/hostname", name: "hostname", size: 4},
		{path: "/etc", name: "etc", dir: true},
		{path: "/etc/", name: "etc", dir: true},
		{path: "/", name: "/", dir: true},
		{path: "/etclink", name: "etclink", symlink: true, link: "/etc"},
		// The directory part is resolved inside the root.
		{path: "/etclink/passwd", name: "passwd", size: 26},
		{path: "/hostlink/passwd", name: "passwd", size: 26},
		{path: "/data/rel", name: "rel", symlink: true, link: "/etc/hostname"},
		{path: "/data/broken", name: "broken", symlink: true, link: "/nowhere/file"},
	} {
		st, err := Stat(root, tc.path)
		if err != nil {
			t.Errorf("Stat(%q): %v", tc.path, err)
			continue
		}
		if st.Name != tc.name || st.Mode.IsDir() != tc.dir || (st.Mode&os.ModeSymlink != 0) != tc.symlink || st.LinkTarget != tc.link || (!tc.dir && !tc.symlink && st.Size != tc.size) {
			t.Errorf("Stat(%q) = %+v", tc.path, st)
		}
	}
	for _, p := range []string{"/nope", "/etc/nope", "/etc/hostname/x", "/etc/hostname/"} {
		if _, err := Stat(root, p); !errdefs.IsNotFound(err) {
			t.Errorf("Stat(%q): %v, want NotFound", p, err)
		} else if !strings.Contains(err.Error(), "Could not find the file "+p+" in container") {
			t.Errorf("Stat(%q): message %q", p, err)
		}
	}
}

type entry struct {
	name, body, link string
	typ              byte
}

func readTar(t *testing.T, b []byte) []entry {
	t.Helper()
	var out []entry
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(tr)
		out = append(out, entry{name: h.Name, body: string(body), link: h.Linkname, typ: h.Typeflag})
	}
}

func names(es []entry) []string {
	var n []string
	for _, e := range es {
		n = append(n, e.name)
	}
	return n
}

func archive(t *testing.T, root, p string) []entry {
	t.Helper()
	s, err := Open(root, p)
	if err != nil {
		t.Fatalf("Open(%q): %v", p, err)
	}
	defer s.Close()
	var buf bytes.Buffer
	if err := s.WriteTo(t.Context(), &buf); err != nil {
		t.Fatalf("WriteTo(%q): %v", p, err)
	}
	return readTar(t, buf.Bytes())
}

func TestOpenWriteTo(t *testing.T) {
	root := tree(t)
	if got := archive(t, root, "/etc/hostname"); len(got) != 1 || got[0].name != "hostname" || got[0].body != "box\n" {
		t.Errorf("file: %+v", got)
	}
	want := []string{"data/", "data/a/", "data/a/b", "data/broken", "data/hard", "data/rel"}
	got := archive(t, root, "/data")
	if !slices.Equal(names(got), want) {
		t.Errorf("dir: %q, want %q", names(got), want)
	}
	for _, e := range got {
		switch e.name {
		case "data/hard":
			if e.typ != tar.TypeLink || e.link != "data/a/b" {
				t.Errorf("hard link: %+v", e)
			}
		case "data/rel":
			if e.typ != tar.TypeSymlink || e.link != "../etc/hostname" {
				t.Errorf("symlink: %+v", e)
			}
		}
	}
	if got := names(archive(t, root, "/data/a/.")); !slices.Equal(got, []string{"./", "b"}) {
		t.Errorf("dir/.: %q", got)
	}
	// The last element is not followed; a trailing slash follows it.
	if got := archive(t, root, "/etclink"); len(got) != 1 || got[0].typ != tar.TypeSymlink || got[0].link != "/etc" {
		t.Errorf("symlink: %+v", got)
	}
	if got := names(archive(t, root, "/etclink/")); !slices.Equal(got, []string{"etclink/", "etclink/hostname", "etclink/passwd"}) {
		t.Errorf("symlink/: %q", got)
	}
	// Through a symlink that points out of the root: the root's /etc.
	if got := archive(t, root, "/hostlink/passwd"); len(got) != 1 || got[0].body != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("escaping symlink: %+v", got)
	}
	if _, err := Open(root, "/nope/x"); !errdefs.IsNotFound(err) {
		t.Errorf("Open of a missing path: %v", err)
	}
}

func TestExport(t *testing.T) {
	root := tree(t)
	var buf bytes.Buffer
	if err := Export(t.Context(), root, &buf); err != nil {
		t.Fatal(err)
	}
	want := []string{"data/", "data/a/", "data/a/b", "data/broken", "data/hard", "data/rel", "etc/", "etc/hostname", "etc/passwd", "etclink", "hostlink"}
	if got := names(readTar(t, buf.Bytes())); !slices.Equal(got, want) {
		t.Errorf("export: %q, want %q", got, want)
	}
}

type tarEntry struct {
	hdr  tar.Header
	body string
}

func mkTar(t *testing.T, es ...tarEntry) *bytes.Reader {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		h := e.hdr
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return bytes.NewReader(buf.Bytes())
}

func TestExtract(t *testing.T) {
	root := tree(t)
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	uid, gid := os.Getuid(), os.Getgid()
	err := Extract(t.Context(), root, "/data", mkTar(t,
		tarEntry{hdr: tar.Header{Name: "new/", Typeflag: tar.TypeDir, Mode: 0o750, ModTime: mtime, Uid: uid, Gid: gid}},
		tarEntry{hdr: tar.Header{Name: "new/f", Mode: 0o640, ModTime: mtime, Uid: uid, Gid: gid}, body: "hello"},
		tarEntry{hdr: tar.Header{Name: "new/l", Typeflag: tar.TypeSymlink, Linkname: "/etc/passwd", Uid: uid, Gid: gid}},
		tarEntry{hdr: tar.Header{Name: "new/h", Typeflag: tar.TypeLink, Linkname: "new/f"}},
		tarEntry{hdr: tar.Header{Name: "missing/parent/g", Uid: uid, Gid: gid}, body: "g"},
		// Replaces the file of the tree.
		tarEntry{hdr: tar.Header{Name: "a/b", Uid: uid, Gid: gid}, body: "replaced"},
	), ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(p, want string) {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(root, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q %v, want %q", p, b, err, want)
		}
	}
	check("data/new/f", "hello")
	check("data/new/h", "hello")
	check("data/missing/parent/g", "g")
	check("data/a/b", "replaced")
	check("data/hard", "deep") // the old inode keeps the old content
	if l, _ := os.Readlink(filepath.Join(root, "data/new/l")); l != "/etc/passwd" {
		t.Errorf("symlink: %q", l)
	}
	fi, err := os.Stat(filepath.Join(root, "data/new"))
	if err != nil || fi.Mode().Perm() != 0o750 || !fi.ModTime().Equal(mtime) {
		t.Errorf("dir metadata: %v %v %v", fi.Mode(), fi.ModTime(), err)
	}
	if fi, _ := os.Stat(filepath.Join(root, "data/new/f")); fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mtime) {
		t.Errorf("file metadata: %v %v", fi.Mode(), fi.ModTime())
	}

	// The extraction point through a symlink that points out of the root:
	// the root's /etc, never the host's.
	if err := Extract(t.Context(), root, "/hostlink", mkTar(t, tarEntry{hdr: tar.Header{Name: "berth-test-file", Uid: uid, Gid: gid}, body: "x"}), ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	check("etc/berth-test-file", "x")
	if _, err := os.Stat("/etc/berth-test-file"); err == nil {
		t.Fatal("extraction escaped the root")
	}
}

// TestExtractHostile: entries that would leave the extraction directory
// are refused with an error naming them, and nothing is written outside
// the root.
func TestExtractHostile(t *testing.T) {
	for _, tc := range []struct {
		name string
		es   []tarEntry
		want string
	}{
		{"dotdot", []tarEntry{{hdr: tar.Header{Name: "../escape"}, body: "x"}}, "leaves the extraction directory"},
		{"dotdot deep", []tarEntry{{hdr: tar.Header{Name: "a/../../../escape"}, body: "x"}}, "leaves the extraction directory"},
		{"absolute dotdot", []tarEntry{{hdr: tar.Header{Name: "/../escape"}, body: "x"}}, "leaves the extraction directory"},
		{"relative symlink out", []tarEntry{{hdr: tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../../../etc"}}}, "invalid symlink"},
		{"hard link out", []tarEntry{{hdr: tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../etc/passwd"}}}, "invalid hard link"},
		{"unsupported type", []tarEntry{{hdr: tar.Header{Name: "x", Typeflag: 'Z'}}}, "unsupported entry type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := tree(t)
			err := Extract(t.Context(), root, "/data", mkTar(t, tc.es...), ExtractOptions{})
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want InvalidArgument with %q", err, tc.want)
			}
			if _, err := os.Lstat(filepath.Join(root, "escape")); err == nil {
				t.Error("an entry was written outside the extraction directory")
			}
		})
	}

	// A symlink to "/" then a file through it: inside the container's
	// root, as Docker's chrooted extraction does, never on the host.
	root := tree(t)
	err := Extract(t.Context(), root, "/data", mkTar(t,
		tarEntry{hdr: tar.Header{Name: "evil", Typeflag: tar.TypeSymlink, Linkname: "/"}},
		tarEntry{hdr: tar.Header{Name: "evil/etc/berth-evil"}, body: "pwned"},
	), ExtractOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "etc/berth-evil")); err != nil || string(b) != "pwned" {
		t.Errorf("through the symlink: %q %v", b, err)
	}
	if _, err := os.Stat("/etc/berth-evil"); err == nil {
		os.Remove("/etc/berth-evil")
		t.Fatal("extraction wrote to the host's /etc")
	}

	// A truncated tar.
	b, _ := io.ReadAll(mkTar(t, tarEntry{hdr: tar.Header{Name: "big"}, body: strings.Repeat("x", 4096)}))
	err = Extract(t.Context(), root, "/data", bytes.NewReader(b[:1024]), ExtractOptions{})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("truncated tar: %v", err)
	}
}

func TestExtractPoint(t *testing.T) {
	root := tree(t)
	one := func() io.Reader { return mkTar(t, tarEntry{hdr: tar.Header{Name: "f"}, body: "x"}) }
	if err := Extract(t.Context(), root, "/nope", one(), ExtractOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("missing dir: %v", err)
	}
	err := Extract(t.Context(), root, "/etc/hostname", one(), ExtractOptions{})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "extraction point is not a directory") {
		t.Errorf("file as dir: %v", err)
	}
	// noOverwriteDirNonDir: a file where a directory is, and the reverse.
	err = Extract(t.Context(), root, "/", mkTar(t, tarEntry{hdr: tar.Header{Name: "etc"}, body: "x"}), ExtractOptions{NoOverwriteDirNonDir: true})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "cannot overwrite directory") {
		t.Errorf("dir by file: %v", err)
	}
	err = Extract(t.Context(), root, "/etc", mkTar(t, tarEntry{hdr: tar.Header{Name: "hostname/", Typeflag: tar.TypeDir, Mode: 0o755}}), ExtractOptions{NoOverwriteDirNonDir: true})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "cannot overwrite non-directory") {
		t.Errorf("file by dir: %v", err)
	}
	// Without it the directory is replaced.
	if err := Extract(t.Context(), root, "/", mkTar(t, tarEntry{hdr: tar.Header{Name: "data"}, body: "flat"}), ExtractOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "data")); err != nil || string(b) != "flat" {
		t.Errorf("replaced dir: %q %v", b, err)
	}
}
