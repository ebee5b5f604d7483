package spec

import (
	"errors"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

func mkfifo(path string) error { return unix.Mkfifo(path, 0o644) }

func TestDevicesFromPath(t *testing.T) {
	devs, err := DevicesFromPath("/dev/null", "/dev/mynull", "rw")
	if err != nil {
		t.Fatal(err)
	}
	want := Device{Path: "/dev/mynull", Type: "c", Major: 1, Minor: 3, FileMode: devs[0].FileMode, Permissions: "rw"}
	if len(devs) != 1 || devs[0] != want {
		t.Fatalf("got %+v, want %+v", devs, want)
	}
	if devs[0].FileMode&0o777 != 0o666 {
		t.Fatalf("mode = %o", devs[0].FileMode)
	}

	if _, err := DevicesFromPath("/etc/hostname", "", ""); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("regular file: err = %v", err)
	}
	if _, err := DevicesFromPath("/dev/does-not-exist", "", ""); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("missing: err = %v", err)
	}
	if _, err := DevicesFromPath("/dev/null", "", "x"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("bad permissions: err = %v", err)
	}
}

func TestHostDevices(t *testing.T) {
	devs, err := HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	paths := make([]string, 0, len(devs))
	for _, d := range devs {
		paths = append(paths, d.Path)
	}
	for _, p := range []string{"/dev/null", "/dev/zero", "/dev/urandom"} {
		if !slices.Contains(paths, p) {
			t.Errorf("%s missing from %v", p, paths)
		}
	}
	for _, p := range paths {
		if p == "/dev/console" || slices.Contains([]string{"/dev/pts/ptmx", "/dev/pts/0"}, p) {
			t.Errorf("%s must be skipped", p)
		}
	}
}

func TestCurrentCapabilities(t *testing.T) {
	caps, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	// Every cap we report must be one Generate accepts.
	if _, err := capabilitySet(Capabilities{All: caps, Add: []string{"ALL"}}, false); err != nil {
		t.Fatal(err)
	}
	if unix.Geteuid() == 0 && !slices.Contains(caps, "CAP_SYS_ADMIN") {
		t.Fatalf("root without CAP_SYS_ADMIN in its bounding set? %v", caps)
	}
}

func TestCurrentOOMScoreAdj(t *testing.T) {
	n, err := CurrentOOMScoreAdj()
	if err != nil {
		t.Fatal(err)
	}
	if n < -1000 || n > 1000 {
		t.Fatalf("oom_score_adj = %d", n)
	}
}

func TestAppArmorIgnoredWithoutKernelSupport(t *testing.T) {
	for _, a := range []AppArmor{{Kind: AppArmorRuntimeDefault}, {Kind: AppArmorLocalhost, Profile: "p"}, {Kind: AppArmorUnconfined}} {
		got, err := appArmorProfile(a, false, false)
		if err != nil || got != "" {
			t.Fatalf("%+v without apparmor: %q %v", a, got, err)
		}
	}
	if got, _ := appArmorProfile(AppArmor{Kind: AppArmorLocalhost, Profile: "p"}, false, true); got != "p" {
		t.Fatalf("localhost with apparmor: %q", got)
	}
	if got, _ := appArmorProfile(AppArmor{}, true, true); got != "unconfined" {
		t.Fatalf("privileged with apparmor: %q", got)
	}
	if _, err := appArmorProfile(AppArmor{Kind: AppArmorRuntimeDefault}, false, true); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Fatalf("runtime default with apparmor: %v", err)
	}
}
