package dockerapi

import "net/http"

// containerTop is GET /containers/{name}/top?ps_args=.
func (s *server) containerTop(w http.ResponseWriter, r *http.Request) error {
	resp, err := s.engine.Top(r.Context(), r.PathValue("name"), r.URL.Query().Get("ps_args"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
