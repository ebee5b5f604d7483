package dockerapi

import (
	"net/http"

	"github.com/moby/moby/api/types/container"
)

// containerUpdate is POST /containers/{name}/update.
func (s *server) containerUpdate(w http.ResponseWriter, r *http.Request) error {
	var u container.UpdateConfig
	if err := decodeBody(r, &u); err != nil {
		if err == errEmptyBody {
			return invalid("invalid JSON: empty request body")
		}
		return err
	}
	warnings, err := s.engine.Update(r.Context(), r.PathValue("name"), u)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, container.UpdateResponse{Warnings: warnings})
	return nil
}
