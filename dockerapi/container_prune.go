package dockerapi

import "net/http"

// containerPrune is POST /containers/prune?filters=.
func (s *server) containerPrune(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	report, err := s.engine.Prune(r.Context(), f)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}
