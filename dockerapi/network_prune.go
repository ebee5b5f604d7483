package dockerapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	dnet "github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine/network"
)

// networkPrune is POST /networks/prune: every custom network no running
// container uses, with the filters until and label (label! negates).
func (s *server) networkPrune(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	var until time.Time
	for k, vs := range f {
		switch k {
		case "label", "label!":
		case "until":
			if len(vs) != 1 {
				return invalid("more than one until filter specified")
			}
			if until, err = parseTimestamp(vs[0], time.Now()); err != nil {
				return invalid("invalid filter 'until=%s': %v", vs[0], err)
			}
		default:
			return invalid("invalid filter '%s'", k)
		}
	}
	keep := func(n network.Network) bool {
		if !until.IsZero() && !n.Created.Before(until) {
			return true
		}
		if !matchLabels(n.Labels, f["label"]) {
			return true
		}
		for _, v := range f["label!"] {
			key, val, hasVal := strings.Cut(v, "=")
			if got, ok := n.Labels[key]; ok && (!hasVal || got == val) {
				return true
			}
		}
		return false
	}
	deleted, err := s.opts.Networks.Prune(r.Context(), keep)
	if err != nil {
		return err
	}
	if deleted == nil {
		deleted = []string{}
	}
	writeJSON(w, http.StatusOK, dnet.PruneReport{NetworksDeleted: deleted})
	return nil
}

// parseTimestamp reads docker's time filters: a Unix time (with
// fractional seconds), an RFC 3339 date, or a duration before now ("24h").
func parseTimestamp(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	if secs, frac, ok := strings.Cut(v, "."); ok || secs == v {
		if s, err := strconv.ParseInt(secs, 10, 64); err == nil {
			var ns int64
			if ok {
				frac = (frac + "000000000")[:9]
				if ns, err = strconv.ParseInt(frac, 10, 64); err != nil {
					return time.Time{}, err
				}
			}
			return time.Unix(s, ns), nil
		}
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, invalid("%q is not a timestamp, date or duration", v)
}
