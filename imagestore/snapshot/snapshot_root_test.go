package snapshot

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore/unpack"
	"github.com/berth-dev/berth/internal/testutil"
)

func needRoot(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t, "mounts overlayfs and writes overlay whiteouts")
}

type tarEnt struct{ name, body string }

// layerDir unpacks a tar of entries (a name ending in "/" is a directory)
// into a fresh directory.
func layerDir(t *testing.T, root, name string, ents ...tarEnt) string {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.body))}
		if strings.HasSuffix(e.name, "/") {
			h = &tar.Header{Name: e.name, Typeflag: tar.TypeDir, Mode: 0o755}
		}
		tw.WriteHeader(h)
		tw.Write([]byte(e.body))
	}
	tw.Close()
	dir := filepath.Join(root, "layers", name, "fs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := unpack.Apply(t.Context(), dir, &buf, unpack.Options{}); err != nil {
		t.Fatalf("unpack %s: %v", name, err)
	}
	return dir
}

// mount mounts ms on target the way a runtime does and returns the unmount.
func mount(t *testing.T, ms []Mount, target string) func() {
	t.Helper()
	if len(ms) != 1 {
		t.Fatalf("want one mount, got %+v", ms)
	}
	m := ms[0]
	var flags uintptr
	var data []string
	ro := false
	for _, o := range m.Options {
		switch o {
		case "rbind":
			flags |= unix.MS_BIND | unix.MS_REC
		case "ro":
			ro = true
		case "rw":
		default:
			data = append(data, o)
		}
	}
	if err := unix.Mount(m.Source, target, m.Type, flags, strings.Join(data, ",")); err != nil {
		t.Fatalf("mount %+v: %v", m, err)
	}
	if ro && flags&unix.MS_BIND != 0 {
		// A bind mount takes "ro" only on a remount.
		if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			unix.Unmount(target, unix.MNT_DETACH)
			t.Fatalf("remount ro: %v", err)
		}
	}
	done := false
	unmount := func() {
		if !done {
			done = true
			if err := unix.Unmount(target, 0); err != nil {
				t.Errorf("unmount %s: %v", target, err)
			}
		}
	}
	t.Cleanup(unmount)
	return unmount
}

func exists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func mountedUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

func TestPrepareRootOverlay(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	base := layerDir(t, root, "base",
		tarEnt{"etc/", ""}, tarEnt{"etc/passwd", "root:x:0:0"}, tarEnt{"etc/hostname", "base"},
		tarEnt{"opq/", ""}, tarEnt{"opq/old", "old"}, tarEnt{"data/", ""}, tarEnt{"data/a", "a"})
	top := layerDir(t, root, "top",
		tarEnt{"etc/", ""}, tarEnt{"etc/.wh.passwd", ""},
		tarEnt{"opq/", ""}, tarEnt{"opq/.wh..wh..opq", ""}, tarEnt{"opq/new", "new"})

	// The merged "/" shows the upper dir's owner and mode, which must be
	// the topmost layer's.
	if err := os.Chown(top, 1000, 1001); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(top, 0o750); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Prepare("c1", []string{top, base})
	if err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	unmount := mount(t, ms, target)

	var st unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 1000 || st.Gid != 1001 || st.Mode&0o7777 != 0o750 {
		t.Errorf("merged / is %d:%d %o, want 1000:1001 750 like the top layer", st.Uid, st.Gid, st.Mode&0o7777)
	}
	for p, want := range map[string]bool{
		"etc/passwd": false, "etc/hostname": true, "opq/old": false, "opq/new": true, "data/a": true,
	} {
		if got := exists(filepath.Join(target, p)); got != want {
			t.Errorf("%s visible = %v, want %v", p, got, want)
		}
	}
	if err := os.WriteFile(filepath.Join(target, "data/written"), []byte("w"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(target, "etc/hostname")); err != nil {
		t.Fatal(err)
	}
	upper := filepath.Join(root, "snapshots", "c1", "upper")
	if b, err := os.ReadFile(filepath.Join(upper, "data/written")); err != nil || string(b) != "w" {
		t.Errorf("write did not go to the upper dir: %q %v", b, err)
	}
	if !exists(filepath.Join(base, "etc/hostname")) || exists(filepath.Join(base, "data/written")) || exists(filepath.Join(top, "data")) {
		t.Error("a write through the overlay changed a lower dir")
	}
	unmount()

	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 0 {
		t.Errorf("left in snapshots/: %v", entries)
	}
	if m := mountedUnder(t, target); len(m) != 0 {
		t.Errorf("left mounted: %v", m)
	}
}

func TestViewRootReadOnly(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	base := layerDir(t, root, "base", tarEnt{"a", "a"})
	top := layerDir(t, root, "top", tarEnt{"b", "b"}, tarEnt{".wh.a", ""})
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id      string
		lowers  []string
		visible []string
		hidden  []string
	}{
		{"single", []string{base}, []string{"a"}, nil},
		{"multi", []string{top, base}, []string{"b"}, []string{"a"}},
	} {
		t.Run(c.id, func(t *testing.T) {
			ms, err := s.View(c.id, c.lowers, Options{})
			if err != nil {
				t.Fatal(err)
			}
			target := t.TempDir()
			unmount := mount(t, ms, target)
			for _, p := range c.visible {
				if !exists(filepath.Join(target, p)) {
					t.Errorf("%s not visible", p)
				}
			}
			for _, p := range c.hidden {
				if exists(filepath.Join(target, p)) {
					t.Errorf("%s visible through a whiteout", p)
				}
			}
			err = os.WriteFile(filepath.Join(target, "new"), nil, 0o644)
			if !errors.Is(err, unix.EROFS) {
				t.Errorf("write into a view: %v, want EROFS", err)
			}
			unmount()
			if err := s.Remove(c.id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestEphemeralVolatile: an ephemeral writable snapshot mounts with
// overlay's volatile option where the kernel has it (an unmount then does
// not sync the whole file system) and works as any other: writes land in
// its upper dir, which serves as a lower dir afterwards; a durable one,
// and a view, never get it.
func TestEphemeralVolatile(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	lower := layerDir(t, root, "base", tarEnt{"etc/", ""}, tarEnt{"etc/base", "base\n"})
	ms, err := s.PrepareDiffable("eph", []string{lower}, Options{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	hasVolatile := func(ms []Mount) bool {
		for _, o := range ms[0].Options {
			if o == "volatile" {
				return true
			}
		}
		return false
	}
	if hasVolatile(ms) != kernelAtLeast(5, 10) {
		t.Fatalf("ephemeral snapshot mounts %v on a kernel with volatile %v", ms[0].Options, kernelAtLeast(5, 10))
	}
	target := t.TempDir()
	umount := mount(t, ms, target)
	err = os.WriteFile(filepath.Join(target, "etc/new"), []byte("new\n"), 0o644)
	umount()
	if err != nil {
		t.Fatal(err)
	}
	upper, _ := s.UpperDir("eph")
	if b, err := os.ReadFile(filepath.Join(upper, "etc/new")); err != nil || string(b) != "new\n" {
		t.Fatalf("upper etc/new: %q %v", b, err)
	}
	// The upper dir as a lower dir of the next snapshot.
	ms, err = s.PrepareDiffable("eph2", []string{upper, lower}, Options{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	umount = mount(t, ms, target)
	b, err := os.ReadFile(filepath.Join(target, "etc/new"))
	umount()
	if err != nil || string(b) != "new\n" {
		t.Fatalf("next snapshot sees etc/new %q %v", b, err)
	}
	for id, opts := range map[string]Options{"durable": {}} {
		ms, err := s.PrepareDiffable(id, []string{lower}, opts)
		if err != nil || hasVolatile(ms) {
			t.Fatalf("%s: %v %v", id, ms, err)
		}
	}
	if ms, err := s.View("view", []string{upper, lower}, Options{Ephemeral: true}); err != nil || hasVolatile(ms) {
		t.Fatalf("view: %v %v", ms, err)
	}
}
