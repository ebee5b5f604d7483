package imagestore

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
)

func TestSubPath(t *testing.T) {
	dir := t.TempDir()
	top, mid, base := filepath.Join(dir, "top"), filepath.Join(dir, "mid"), filepath.Join(dir, "base")
	for _, d := range []string{filepath.Join(top, "etc"), filepath.Join(base, "etc"), filepath.Join(base, "only-base"), mid} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// A symlink must resolve inside its own layer, never to the host: this
	// one names a host directory that exists, but not inside mid.
	if err := os.Symlink(filepath.Join(top, "etc"), filepath.Join(mid, "etc")); err != nil {
		t.Fatal(err)
	}
	overlay := Mount{Type: "overlay", Source: "overlay", Options: []string{"ro", "lowerdir=" + top + ":" + mid + ":" + base}}

	got, err := SubPath(overlay, "etc")
	if err != nil {
		t.Fatal(err)
	}
	want := Mount{Type: "overlay", Source: "overlay", Options: []string{"ro", "lowerdir=" + filepath.Join(top, "etc") + ":" + filepath.Join(base, "etc")}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("overlay sub-path = %+v\nwant %+v", got, want)
	}
	got, err = SubPath(overlay, "only-base")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Mount{Type: "bind", Source: filepath.Join(base, "only-base"), Options: []string{"ro", "rbind"}}); !reflect.DeepEqual(got, want) {
		t.Errorf("single-layer sub-path = %+v, want %+v", got, want)
	}
	got, err = SubPath(Mount{Type: "bind", Source: top, Options: []string{"ro", "rbind"}}, "etc")
	if err != nil || got.Source != filepath.Join(top, "etc") {
		t.Errorf("bind sub-path = %+v, %v", got, err)
	}
	if _, err := SubPath(overlay, "missing"); !errdefs.IsNotFound(err) {
		t.Errorf("missing sub-path: %v, want NotFound", err)
	}
	for _, bad := range []string{"../x", "/etc", ""} {
		if _, err := SubPath(overlay, bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("sub-path %q: %v, want InvalidArgument", bad, err)
		}
	}
}
