package dockerapi

import (
	"encoding/json"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/registry"
)

// defaultServer is what docker clients send for Docker Hub.
const defaultServer = "https://index.docker.io/v1/"

// auth is POST /auth: check credentials against a registry.
func (s *server) auth(w http.ResponseWriter, r *http.Request) error {
	var ac registry.AuthConfig
	if err := json.NewDecoder(r.Body).Decode(&ac); err != nil {
		return invalid("login: decode request: %v", err)
	}
	l, ok := s.images.(loginer)
	if !ok {
		return errdefs.ErrNotImplemented.WithMessage("login: registry login is not implemented in berth yet")
	}
	server := ac.ServerAddress
	if server == "" {
		server = defaultServer
	}
	if err := l.Login(r.Context(), server, *authOf(ac)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, registry.AuthResponse{Status: "Login Succeeded"})
	return nil
}
