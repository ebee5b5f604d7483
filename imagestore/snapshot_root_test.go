package imagestore

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// The prepared mounts give a real overlay rootfs in which the top layer's
// whiteout hides the base file.
func TestPrepareMountsOverlay(t *testing.T) {
	testutil.RequireRoot(t, "mounts overlayfs")
	reg := newRegistry(t)
	ref := reg.push(t, "test/two:v1", twoLayerImage(t))
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"prepare", "view"} {
		var ms []Mount
		var err error
		if mode == "prepare" {
			ms, err = s.Prepare(ctx, "c-"+mode, ref)
		} else {
			ms, err = s.View(ctx, "c-"+mode, ref)
		}
		if err != nil {
			t.Fatal(err)
		}
		target := t.TempDir()
		m := ms[0]
		if err := unix.Mount(m.Source, target, m.Type, 0, strings.Join(m.Options, ",")); err != nil {
			t.Fatalf("%s: mount %+v: %v", mode, m, err)
		}
		b, rerr := os.ReadFile(filepath.Join(target, "etc/keep"))
		n, nerr := os.ReadFile(filepath.Join(target, "etc/new"))
		_, gerr := os.Stat(filepath.Join(target, "etc/gone"))
		werr := os.WriteFile(filepath.Join(target, "etc/written"), []byte("x"), 0o644)
		if err := unix.Unmount(target, 0); err != nil {
			t.Fatal(err)
		}
		if rerr != nil || string(b) != "keep\n" || nerr != nil || string(n) != "new\n" {
			t.Fatalf("%s: keep=%q %v new=%q %v", mode, b, rerr, n, nerr)
		}
		if !os.IsNotExist(gerr) {
			t.Fatalf("%s: whited-out file visible: %v", mode, gerr)
		}
		if (werr == nil) != (mode == "prepare") {
			t.Fatalf("%s: write into rootfs: %v", mode, werr)
		}
		if err := s.RemoveSnapshot(ctx, "c-"+mode); err != nil {
			t.Fatal(err)
		}
	}
}

// A running container's rootfs is an overlay of the store's own layers,
// mounted below the root: Usage must not count it (nor a tmpfs there).
func TestUsageSkipsMountsBelowRoot(t *testing.T) {
	testutil.RequireRoot(t, "mounts overlayfs")
	reg := newRegistry(t)
	ref := reg.push(t, "test/two:v1", twoLayerImage(t))
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	before, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Prepare(ctx, "c-usage", ref)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := filepath.Join(s.cfg.Root, "runtime", "c-usage", "rootfs")
	shm := filepath.Join(s.cfg.Root, "runtime", "c-usage", "shm")
	for _, d := range []string{rootfs, shm} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	m := ms[0]
	if err := unix.Mount(m.Source, rootfs, m.Type, 0, strings.Join(m.Options, ",")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(rootfs, unix.MNT_DETACH) })
	if err := unix.Mount("shm", shm, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(shm, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(shm, "big"), make([]byte, 512<<10), 0o644); err != nil {
		t.Fatal(err)
	}

	after, err := s.Usage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The snapshot dirs and the two mount points are new; the merged view
	// (every file of the image again) and the tmpfs file are not counted.
	if after.Inodes-before.Inodes > 12 || after.Bytes-before.Bytes > 64<<10 {
		t.Errorf("usage grew from %+v to %+v with a rootfs mounted below the root", before, after)
	}
	if du := duRoot(t, s.cfg.Root); du.Inodes != after.Inodes || du.Bytes != after.Bytes {
		t.Errorf("usage %+v, du -x says %+v", after, du)
	}
}
