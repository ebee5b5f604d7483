package dockerapi

import (
	"fmt"
	"io"
	"net/http"

	"github.com/moby/moby/api/types/common"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/engine"
)

// execRoutes registers the exec endpoints.
func (s *server) execRoutes(handle func(string, handlerFunc)) {
	h := func(f handlerFunc) handlerFunc {
		if s.engine == nil {
			return notImplemented
		}
		return f
	}
	handle("POST /containers/{name}/exec", h(s.execCreate))
	handle("POST /exec/{id}/start", h(s.execStart))
	handle("POST /exec/{id}/resize", h(s.execResize))
	handle("GET /exec/{id}/json", h(s.execInspect))
}

// execCreate is POST /containers/{name}/exec.
func (s *server) execCreate(w http.ResponseWriter, r *http.Request) error {
	// Clients before API 1.48 (docker 28 among them) send the old
	// ExecConfig, whose Detach dockerd ignores here.
	var req struct {
		container.ExecCreateRequest
		Detach bool
	}
	if err := decodeBody(r, &req); err != nil {
		if err == errEmptyBody {
			return invalid("No exec command specified")
		}
		return err
	}
	id, err := s.engine.ExecCreate(r.Context(), r.PathValue("name"), req.ExecCreateRequest)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, common.IDResponse{ID: id})
	return nil
}

// execStart is POST /exec/{id}/start: detached, 200 with no body once the
// process runs; attached, the connection is hijacked (101 or 200) and
// carries the process's stdio, raw under a terminal, multiplexed
// otherwise, until it exits. An error after the hijack is written into
// the stream, as dockerd does.
func (s *server) execStart(w http.ResponseWriter, r *http.Request) error {
	var req container.ExecStartRequest
	if err := decodeBody(r, &req); err != nil && err != errEmptyBody {
		return err
	}
	var sess *hijacked
	var out io.Writer
	err := s.engine.ExecStart(r.Context(), r.PathValue("id"), engine.ExecStartOptions{
		Detach:      req.Detach,
		ConsoleSize: req.ConsoleSize,
		Streams: func(tty bool) (io.Reader, io.Writer, io.Writer, error) {
			h, err := hijack(w, r, tty)
			if err != nil {
				return nil, nil, nil, err
			}
			sess = h
			stdout, stderr := h.outputs(tty)
			out = stdout
			return h, stdout, stderr, nil
		},
	})
	if sess == nil {
		if err != nil {
			return err
		}
		w.WriteHeader(http.StatusOK)
		return nil
	}
	if err != nil {
		noteError(r, err)
		fmt.Fprintf(out, "%s\r\n", err)
	}
	sess.close()
	return nil
}

// execResize is POST /exec/{id}/resize?h=&w=.
func (s *server) execResize(w http.ResponseWriter, r *http.Request) error {
	height, err := intValue(r, "h", 0)
	if err != nil {
		return err
	}
	width, err := intValue(r, "w", 0)
	if err != nil {
		return err
	}
	if height < 0 || width < 0 || height > 65535 || width > 65535 {
		return invalid("invalid terminal size %dx%d", width, height)
	}
	if err := s.engine.ExecResize(r.Context(), r.PathValue("id"), uint16(height), uint16(width)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// execInspect is GET /exec/{id}/json.
func (s *server) execInspect(w http.ResponseWriter, r *http.Request) error {
	resp, err := s.engine.ExecInspect(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}
