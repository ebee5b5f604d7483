package dockerapi

import (
	"net/http"

	dnet "github.com/moby/moby/api/types/network"
)

// networkList is GET /networks with docker's filters.
func (s *server) networkList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	out := []dnet.Summary{}
	for _, n := range s.opts.Networks.List() {
		ok, err := matchNetwork(n, len(s.opts.Networks.NetworkEndpoints(n.ID)) > 0, f)
		if err != nil {
			return err
		}
		if ok {
			out = append(out, dnet.Summary{Network: summaryOf(n)})
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
