package dockerapi

import "net/http"

// networkRemove is DELETE /networks/{id}: 204, or 403 for a predefined
// network or one with active endpoints.
func (s *server) networkRemove(w http.ResponseWriter, r *http.Request) error {
	if err := s.opts.Networks.Remove(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
