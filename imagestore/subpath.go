package imagestore

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
)

// SubPath narrows a read-only snapshot mount to sub: the same overlay
// with each layer's sub directory as a lower (layers without it drop out),
// or a bind mount when one layer remains. Each join stays inside its layer
// (securejoin). A whiteout of sub itself in an upper layer is not honoured:
// the lower layers' copies still show.
func SubPath(m Mount, sub string) (Mount, error) {
	if !filepath.IsLocal(sub) {
		return Mount{}, fmt.Errorf("%w: sub-path %q must be relative and stay inside the image", errdefs.ErrInvalidArgument, sub)
	}
	var roots, rest []string
	switch m.Type {
	case "bind":
		roots = []string{m.Source}
		rest = []string{"ro", "rbind"}
	case "overlay":
		for _, o := range m.Options {
			if l, ok := strings.CutPrefix(o, "lowerdir="); ok {
				roots = strings.Split(l, ":")
			} else {
				rest = append(rest, o)
			}
		}
	default:
		return Mount{}, fmt.Errorf("%w: sub-path of a %s mount", errdefs.ErrNotImplemented, m.Type)
	}
	var dirs []string
	for _, r := range roots {
		p, err := securejoin.SecureJoin(r, sub)
		if err != nil {
			return Mount{}, fmt.Errorf("resolve sub-path %q: %w", sub, err)
		}
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			dirs = append(dirs, p)
		}
	}
	switch len(dirs) {
	case 0:
		return Mount{}, fmt.Errorf("%w: sub-path %q is not a directory in the image", errdefs.ErrNotFound, sub)
	case 1:
		// An overlay needs two lowers when it has no upper.
		return Mount{Type: "bind", Source: dirs[0], Options: []string{"ro", "rbind"}}, nil
	}
	return Mount{Type: "overlay", Source: "overlay", Options: append(rest, "lowerdir="+strings.Join(dirs, ":"))}, nil
}
