package cri

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/berth-dev/berth/runtime"
)

type sweptSnapshots struct{ ids []string }

func (f *sweptSnapshots) Snapshots(context.Context) ([]string, error) {
	return slices.Clone(f.ids), nil
}

func (f *sweptSnapshots) RemoveSnapshot(_ context.Context, id string) error {
	f.ids = slices.DeleteFunc(f.ids, func(s string) bool { return s == id })
	return nil
}

type knownContainers []string

func (f knownContainers) ListContainers() []*runtime.Container {
	var out []*runtime.Container
	for _, id := range f {
		out = append(out, &runtime.Container{ID: id})
	}
	return out
}

// TestSweepSnapshots: a snapshot (rootfs or image volume) of a container
// the runtime does not know is removed; those of known containers and
// snapshots not named by CreateContainer stay.
func TestSweepSnapshots(t *testing.T) {
	known, lost := strings.Repeat("a", 64), strings.Repeat("b", 64)
	snaps := &sweptSnapshots{ids: []string{known, known + "-iv0", lost, lost + "-iv3", "build-cache", strings.Repeat("c", 63)}}
	removed, err := SweepSnapshots(t.Context(), snaps, knownContainers{known})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{lost, lost + "-iv3"}; !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	if want := []string{known, known + "-iv0", "build-cache", strings.Repeat("c", 63)}; !slices.Equal(snaps.ids, want) {
		t.Errorf("left %q, want %q", snaps.ids, want)
	}
}
