// Package dockerapi serves the Docker Engine-compatible REST API (the subset
// the berth CLI and the docker CLI use) over berthd's engine.
//
// CONTRACT STUB: New's signature is what daemon/ wires; the dockerapi helper
// fills it in.
package dockerapi

import (
	"net/http"

	"github.com/berth-dev/berth/imagestore"
)

// Options configure the API server.
type Options struct {
	// Root and StateDir are reported by /info.
	Root     string
	StateDir string
	// Version is Berth's version string.
	Version string
}

// New returns the API handler.
func New(images *imagestore.Store, opts Options) http.Handler {
	return http.NotFoundHandler()
}
