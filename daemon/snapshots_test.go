package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
)

type sweptSnapshots struct {
	names []string
	// fail names a snapshot whose removal fails.
	fail string
}

func (f *sweptSnapshots) Snapshots(context.Context) ([]string, error) {
	return slices.Clone(f.names), nil
}

func (f *sweptSnapshots) RemoveSnapshot(_ context.Context, name string) error {
	if name == f.fail {
		return fmt.Errorf("remove snapshot %s: device busy", name)
	}
	f.names = slices.DeleteFunc(f.names, func(s string) bool { return s == name })
	return nil
}

// owner names snapshots matching its scheme and holds those in held.
type owner struct {
	scheme func(string) bool
	held   []string
}

func (o owner) HoldsSnapshot(name string) (bool, bool) {
	if !o.scheme(name) {
		return false, false
	}
	return true, slices.Contains(o.held, name)
}

func hex64(name string) bool {
	id, _, _ := strings.Cut(name, "-iv")
	return len(id) == 64 && strings.Trim(id, "0123456789abcdef") == ""
}

// TestSweepSnapshots: a snapshot some owner names and none holds goes;
// held ones, ones no owner names, and a 64-hex one that the CRI does not
// hold but the engine does (both name snapshots by container ID) stay.
func TestSweepSnapshots(t *testing.T) {
	criHeld, engineHeld, lost := strings.Repeat("a", 64), strings.Repeat("e", 64), strings.Repeat("b", 64)
	cri := owner{scheme: hex64, held: []string{criHeld, criHeld + "-iv0"}}
	engine := owner{scheme: hex64, held: []string{engineHeld}}
	builder := owner{scheme: func(n string) bool { return strings.HasPrefix(n, "build-") }, held: []string{"build-1"}}
	snaps := &sweptSnapshots{names: []string{
		criHeld, criHeld + "-iv0", engineHeld, lost, lost + "-iv3",
		"build-1", "build-2", "someone-else", strings.Repeat("c", 63),
	}}
	removed, err := sweepSnapshots(t.Context(), snaps, cri, engine, builder)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{lost, lost + "-iv3", "build-2"}; !slices.Equal(removed, want) {
		t.Errorf("removed %q, want %q", removed, want)
	}
	if want := []string{criHeld, criHeld + "-iv0", engineHeld, "build-1", "someone-else", strings.Repeat("c", 63)}; !slices.Equal(snaps.names, want) {
		t.Errorf("left %q, want %q", snaps.names, want)
	}

	// Without the engine's say, its snapshot would look lost to the CRI.
	snaps = &sweptSnapshots{names: []string{engineHeld}}
	if removed, _ := sweepSnapshots(t.Context(), snaps, cri); !slices.Equal(removed, []string{engineHeld}) {
		t.Errorf("CRI alone removed %q", removed)
	}

	// A failed removal is reported; the rest go on.
	snaps = &sweptSnapshots{names: []string{lost, "build-2"}, fail: lost}
	removed, err = sweepSnapshots(t.Context(), snaps, cri, builder)
	if err == nil || !strings.Contains(err.Error(), "device busy") || !slices.Equal(removed, []string{"build-2"}) {
		t.Errorf("with a failing removal: removed %q, err %v", removed, err)
	}
}
