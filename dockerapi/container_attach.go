package dockerapi

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/berth-dev/berth/engine"
)

// containerAttach is POST /containers/{name}/attach: it answers 101 (or
// 200) and streams the container's stdio over the hijacked connection,
// multiplexed with docker's stdcopy framing, or raw for a terminal.
// Errors found before the hijack get their status code; later ones go
// into the stream, as dockerd writes them.
func (s *server) containerAttach(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	var sess *hijacked
	var out io.Writer
	err := s.engine.Attach(ctx, r.PathValue("name"), engine.AttachOptions{
		Stdin: boolValue(r, "stdin"), Stdout: boolValue(r, "stdout"), Stderr: boolValue(r, "stderr"),
		Stream: boolValue(r, "stream"), Logs: boolValue(r, "logs"),
		DetachKeys: r.URL.Query().Get("detachKeys"),
		Streams: func(tty bool) (io.Reader, io.Writer, io.Writer, io.Writer, error) {
			h, err := hijack(w, r, tty)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			sess = h
			stdout, stderr := h.outputs(tty)
			out = stdout
			// A client that went away ends the session at the next
			// output.
			return h, &cancelOnError{w: stdout, cancel: cancel}, &cancelOnError{w: stderr, cancel: cancel}, h, nil
		},
	})
	if sess == nil {
		return err
	}
	if err != nil {
		noteError(r, err)
		fmt.Fprintln(out, "Error attaching:", err)
	}
	sess.close()
	return nil
}

// cancelOnError ends a session whose client stopped reading.
type cancelOnError struct {
	w      io.Writer
	cancel func()
}

func (c *cancelOnError) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	if err != nil {
		c.cancel()
	}
	return n, err
}
