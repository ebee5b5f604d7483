package dockerapi

import (
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/engine"
)

// containerStats is GET /containers/{name}/stats: one JSON object per
// reading, every second while stream (the default) holds, else one; with
// stream=false, one-shot skips the second sample that fills precpu_stats.
func (s *server) containerStats(w http.ResponseWriter, r *http.Request) error {
	o := engine.StatsOptions{Stream: boolValueOr(r, "stream", true), OneShot: boolValue(r, "one-shot")}
	if o.OneShot && o.Stream {
		return invalid("cannot have stream=true and one-shot=true")
	}
	started := false
	enc := json.NewEncoder(w)
	flusher, _ := w.(http.Flusher)
	err := s.engine.Stats(r.Context(), r.PathValue("name"), o, func(st container.StatsResponse) error {
		if !started {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if err := enc.Encode(st); err != nil {
			return err
		}
		if flusher != nil {
			flusher.Flush()
		}
		return nil
	})
	if err != nil && !started {
		return err
	}
	if err != nil {
		noteError(r, err)
	}
	return nil
}
