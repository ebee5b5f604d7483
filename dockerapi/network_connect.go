package dockerapi

import (
	"net/http"

	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/network"
)

// networkConnect is POST /networks/{id}/connect: a created container gets
// the network when it starts, a running one at once.
func (s *server) networkConnect(w http.ResponseWriter, r *http.Request) error {
	var req dnet.ConnectRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Container == "" {
		return invalid("no container given to connect")
	}
	id, err := s.opts.Networks.ResolveContainer(req.Container)
	if err != nil {
		return err
	}
	if err := s.opts.Networks.Connect(r.Context(), id, r.PathValue("id"), network.DockerEndpointConfig(req.EndpointConfig)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// networkDisconnect is POST /networks/{id}/disconnect.
func (s *server) networkDisconnect(w http.ResponseWriter, r *http.Request) error {
	var req dnet.DisconnectRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	if req.Container == "" {
		return invalid("no container given to disconnect")
	}
	id, err := s.opts.Networks.ResolveContainer(req.Container)
	if err != nil {
		return err
	}
	if err := s.opts.Networks.Disconnect(r.Context(), id, r.PathValue("id"), req.Force); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
