package dockerapi

import (
	"encoding/json"
	"net/http"

	"github.com/moby/moby/api/types/container"
)

// containerWait is POST /containers/{name}/wait?condition=. The 200 and
// its headers go out at once: the docker CLI sends the wait before the
// start and blocks on the headers.
func (s *server) containerWait(w http.ResponseWriter, r *http.Request) error {
	cond := container.WaitCondition(r.URL.Query().Get("condition"))
	ch, err := s.engine.Wait(r.Context(), r.PathValue("name"), cond)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	res := <-ch
	resp := container.WaitResponse{StatusCode: int64(res.StatusCode)}
	if res.Err != nil {
		if r.Context().Err() != nil {
			return nil // the client left
		}
		resp.Error = &container.WaitExitError{Message: res.Err.Error()}
	}
	_ = json.NewEncoder(w).Encode(resp)
	return nil
}
