package engine

import (
	"slices"
	"testing"

	"github.com/berth-dev/berth/runtime"
)

func TestLayersOf(t *testing.T) {
	upper, lowers, ok := layersOf([]runtime.Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "workdir=/s/work", "upperdir=/s/upper", "lowerdir=/l/a:/l/b"}}})
	if !ok || upper != "/s/upper" || !slices.Equal(lowers, []string{"/l/a", "/l/b"}) {
		t.Errorf("overlay: %q %q %v", upper, lowers, ok)
	}
	// An image without layers: the upper dir bound alone.
	if upper, lowers, ok := layersOf([]runtime.Mount{{Type: "bind", Source: "/s/upper", Options: []string{"rw", "rbind"}}}); !ok || upper != "/s/upper" || lowers != nil {
		t.Errorf("bind: %q %q %v", upper, lowers, ok)
	}
	for _, ms := range [][]runtime.Mount{
		nil,
		{{Type: "bind", Source: "/l/a", Options: []string{"ro", "rbind"}}},
		{{Type: "overlay", Options: []string{"lowerdir=/l/a"}}},
		{{Type: "tmpfs"}},
	} {
		if _, _, ok := layersOf(ms); ok {
			t.Errorf("layersOf(%v) accepted", ms)
		}
	}
}
