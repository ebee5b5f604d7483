package dockerapi

import (
	"strings"

	"github.com/distribution/reference"
)

// familiar turns a normalized reference into what docker shows
// ("docker.io/library/busybox:latest" -> "busybox:latest"); strings that do
// not parse are shown as they are.
func familiar(ref string) string {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return ref
	}
	return reference.FamiliarString(n)
}

func familiarAll(refs []string) []string {
	out := make([]string, 0, len(refs))
	for _, r := range refs {
		out = append(out, familiar(r))
	}
	return out
}

// splitNameAction splits "127.0.0.1:5000/a/b:tag/json" into the image name
// and the last path element when that element is one of actions.
func splitNameAction(rest string, actions ...string) (name, action string) {
	i := strings.LastIndex(rest, "/")
	if i < 0 {
		return rest, ""
	}
	for _, a := range actions {
		if rest[i+1:] == a {
			return rest[:i], a
		}
	}
	return rest, ""
}
