package dockerapi

import "net/http"

// containerChanges is GET /containers/{name}/changes.
func (s *server) containerChanges(w http.ResponseWriter, r *http.Request) error {
	changes, err := s.engine.Changes(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, changes)
	return nil
}
