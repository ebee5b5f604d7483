package dockerapi

import (
	"net/http"
)

// containerExport is GET /containers/{name}/export: the root file system
// as a tar. The status goes with the first bytes, so that a container
// that cannot be read still gets its error code; a failure after them
// cuts the connection, so the client never takes a truncated tar for a
// whole one.
func (s *server) containerExport(w http.ResponseWriter, r *http.Request) error {
	lw := &lazyWriter{w: w, contentType: "application/x-tar"}
	err := s.engine.Export(r.Context(), r.PathValue("name"), lw)
	if err != nil && lw.started {
		noteError(r, err)
		panic(http.ErrAbortHandler)
	}
	if err == nil && !lw.started {
		lw.start()
	}
	return err
}
