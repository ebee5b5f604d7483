package spec

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

func TestCheckPropagation(t *testing.T) {
	testutil.RequireRoot(t, "mounts a tmpfs and changes its propagation")
	mnt := t.TempDir()
	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", mnt, err)
		}
	})
	src := filepath.Join(mnt, "vol")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	setProp := func(flag uintptr) {
		t.Helper()
		if err := unix.Mount("", mnt, "", flag, ""); err != nil {
			t.Fatal(err)
		}
	}
	check := func(p Propagation) error {
		return CheckPropagation([]Mount{{Source: src, Destination: "/v", Propagation: p}})
	}

	setProp(unix.MS_PRIVATE)
	if err := check(PropagationPrivate); err != nil {
		t.Fatalf("private on private: %v", err)
	}
	for _, p := range []Propagation{PropagationHostToContainer, PropagationBidirectional} {
		if err := check(p); !errors.Is(err, errdefs.ErrFailedPrecondition) {
			t.Fatalf("propagation %d on a private mount: err = %v", p, err)
		}
	}

	setProp(unix.MS_SHARED)
	for _, p := range []Propagation{PropagationHostToContainer, PropagationBidirectional} {
		if err := check(p); err != nil {
			t.Fatalf("propagation %d on a shared mount: %v", p, err)
		}
	}

	// A slave of a shared mount (a bind of it turned slave): host-to-
	// container works, bidirectional does not. A shared mount without
	// peers would turn private instead, so the bind is needed.
	slave := t.TempDir()
	if err := unix.Mount(mnt, slave, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(slave, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", slave, err)
		}
	})
	if err := unix.Mount("", slave, "", unix.MS_SLAVE, ""); err != nil {
		t.Fatal(err)
	}
	checkIn := func(p Propagation) error {
		return CheckPropagation([]Mount{{Source: filepath.Join(slave, "vol"), Destination: "/v", Propagation: p}})
	}
	if err := checkIn(PropagationHostToContainer); err != nil {
		t.Fatalf("rslave on a slave mount: %v", err)
	}
	if err := checkIn(PropagationBidirectional); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("rshared on a slave mount: err = %v", err)
	}

	if err := CheckPropagation([]Mount{{Source: filepath.Join(mnt, "missing"), Destination: "/v", Propagation: PropagationBidirectional}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("missing source: err = %v", err)
	}
}
