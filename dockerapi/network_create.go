package dockerapi

import (
	"net/http"

	"github.com/containerd/errdefs"
	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/network"
)

// networkCreate is POST /networks/create: 201 with the new network's ID.
func (s *server) networkCreate(w http.ResponseWriter, r *http.Request) error {
	var req dnet.CreateRequest
	if err := decodeBody(r, &req); err != nil {
		return err
	}
	switch {
	case req.Name == "":
		return invalid("network name must not be empty")
	case req.Scope != "" && req.Scope != "local":
		return errdefs.ErrNotImplemented.WithMessage("only networks of scope local are supported, not " + req.Scope)
	case req.Ingress, req.ConfigOnly, req.ConfigFrom != nil && req.ConfigFrom.Network != "":
		return errdefs.ErrNotImplemented.WithMessage("ingress and config-only networks are swarm features, not supported by berth")
	case req.EnableIPv4 != nil && !*req.EnableIPv4:
		return errdefs.ErrNotImplemented.WithMessage("networks without IPv4 are not supported by berth")
	}
	opts := network.CreateOptions{
		Name: req.Name, Driver: req.Driver, Internal: req.Internal, Attachable: req.Attachable,
		Options: req.Options, Labels: req.Labels,
	}
	if req.EnableIPv6 != nil {
		opts.EnableIPv6 = *req.EnableIPv6
	}
	if req.IPAM != nil {
		opts.IPAM.Driver, opts.IPAM.Options = req.IPAM.Driver, req.IPAM.Options
		for _, c := range req.IPAM.Config {
			opts.IPAM.Config = append(opts.IPAM.Config, network.IPAMConfig{Subnet: c.Subnet, IPRange: c.IPRange, Gateway: c.Gateway, AuxAddress: c.AuxAddress})
		}
	}
	n, err := s.opts.Networks.Create(r.Context(), opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, dnet.CreateResponse{ID: n.ID})
	return nil
}
