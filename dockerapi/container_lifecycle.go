package dockerapi

import (
	"errors"
	"net/http"
	"strconv"

	"github.com/berth-dev/berth/engine"
)

// containerStart is POST /containers/{name}/start: 204, or 304 when it
// runs already.
func (s *server) containerStart(w http.ResponseWriter, r *http.Request) error {
	// API < 1.24 carried a HostConfig here; current clients send nothing
	// or "{}".
	err := s.engine.Start(r.Context(), r.PathValue("name"))
	if errors.Is(err, engine.ErrNotModified) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func stopOptions(r *http.Request) (engine.StopOptions, error) {
	t, err := optionalInt(r, "t")
	if err != nil {
		return engine.StopOptions{}, err
	}
	return engine.StopOptions{Signal: r.URL.Query().Get("signal"), Timeout: t}, nil
}

// containerStop is POST /containers/{name}/stop?t=&signal=: 204, or 304
// when it does not run.
func (s *server) containerStop(w http.ResponseWriter, r *http.Request) error {
	o, err := stopOptions(r)
	if err != nil {
		return err
	}
	err = s.engine.Stop(r.Context(), r.PathValue("name"), o)
	if errors.Is(err, engine.ErrAlreadyStopped) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// containerRestart is POST /containers/{name}/restart?t=&signal=.
func (s *server) containerRestart(w http.ResponseWriter, r *http.Request) error {
	o, err := stopOptions(r)
	if err != nil {
		return err
	}
	if err := s.engine.Restart(r.Context(), r.PathValue("name"), o); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// containerKill is POST /containers/{name}/kill?signal=.
func (s *server) containerKill(w http.ResponseWriter, r *http.Request) error {
	if err := s.engine.Kill(r.Context(), r.PathValue("name"), r.URL.Query().Get("signal")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerPause(w http.ResponseWriter, r *http.Request) error {
	if err := s.engine.Pause(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *server) containerUnpause(w http.ResponseWriter, r *http.Request) error {
	if err := s.engine.Unpause(r.Context(), r.PathValue("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// containerRename is POST /containers/{name}/rename?name=.
func (s *server) containerRename(w http.ResponseWriter, r *http.Request) error {
	if err := s.engine.Rename(r.Context(), r.PathValue("name"), r.URL.Query().Get("name")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// containerRemove is DELETE /containers/{name}?v=&force=&link=.
func (s *server) containerRemove(w http.ResponseWriter, r *http.Request) error {
	if boolValue(r, "link") {
		return invalid("links are not supported by berth")
	}
	err := s.engine.Remove(r.Context(), r.PathValue("name"), engine.RemoveOptions{Force: boolValue(r, "force"), Volumes: boolValue(r, "v")})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// containerResize is POST /containers/{name}/resize?h=&w=.
func (s *server) containerResize(w http.ResponseWriter, r *http.Request) error {
	h, err := strconv.ParseUint(r.URL.Query().Get("h"), 10, 16)
	if err != nil {
		return invalid("invalid resize height %q: %v", r.URL.Query().Get("h"), err)
	}
	wd, err := strconv.ParseUint(r.URL.Query().Get("w"), 10, 16)
	if err != nil {
		return invalid("invalid resize width %q: %v", r.URL.Query().Get("w"), err)
	}
	if err := s.engine.Resize(r.Context(), r.PathValue("name"), uint16(h), uint16(wd)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
