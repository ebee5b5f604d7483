package dockerapi

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Media types of a hijacked stream.
const (
	rawStream         = "application/vnd.docker.raw-stream"
	multiplexedStream = "application/vnd.docker.multiplexed-stream"
)

// hijacked is a connection taken over for an attach or exec session.
type hijacked struct {
	conn net.Conn
	// in reads what the client sends (stdin): what the HTTP server had
	// buffered already, then the connection.
	in io.Reader
	// out is the stream to the client: raw, or stdcopy-multiplexed with
	// Stdout and Stderr writers.
	mu sync.Mutex
	// rmu serialises reads of in: a session's stdin pump may still be
	// reading when close drains the input.
	rmu sync.Mutex
}

// hijack answers the request by taking over its connection: 101 UPGRADED
// when the client asked to upgrade (the docker CLI does), else 200, with
// the stream's media type (multiplexed unless raw), as dockerd.
func hijack(w http.ResponseWriter, r *http.Request, raw bool) (*hijacked, error) {
	h, ok := w.(http.Hijacker)
	if !ok {
		return nil, fmt.Errorf("the connection cannot be hijacked")
	}
	conn, brw, err := h.Hijack()
	if err != nil {
		return nil, fmt.Errorf("hijack the connection: %w", err)
	}
	ct := multiplexedStream
	if raw || versionBelow(r, "1.42") {
		ct = rawStream
	}
	var head string
	if r.Header.Get("Upgrade") != "" {
		head = "HTTP/1.1 101 UPGRADED\r\nContent-Type: " + ct + "\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
	} else {
		head = "HTTP/1.1 200 OK\r\nContent-Type: " + ct + "\r\n\r\n"
	}
	// No deadline from the server's timeouts: a session lasts as long as
	// the container's run.
	_ = conn.SetDeadline(time.Time{})
	if _, err := conn.Write([]byte(head)); err != nil {
		conn.Close()
		return nil, fmt.Errorf("answer the hijacked request: %w", err)
	}
	// The buffered reader reads through the server's connection reader,
	// which must not be used after a hijack: take what it holds only.
	pending, _ := brw.Reader.Peek(brw.Reader.Buffered())
	in := io.MultiReader(bytes.NewReader(bytes.Clone(pending)), conn)
	return &hijacked{conn: conn, in: in}, nil
}

// Write sends p to the client.
func (h *hijacked) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.conn.Write(p)
}

// Read reads the client's input.
func (h *hijacked) Read(p []byte) (int, error) {
	h.rmu.Lock()
	defer h.rmu.Unlock()
	return h.in.Read(p)
}

// drainTimeout bounds how long close waits for the client's input to end.
const drainTimeout = 2 * time.Second

// close ends the session: the output side first (the client sees the
// end of the stream), then whatever input the client still sends is read
// and dropped until it closes its side, so that closing the socket with
// unread input does not reset the connection, which the docker CLI
// reports as "connection reset by peer".
func (h *hijacked) close() {
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := h.conn.(closeWriter); ok {
		_ = cw.CloseWrite()
		_ = h.conn.SetReadDeadline(time.Now().Add(drainTimeout))
		_, _ = io.Copy(io.Discard, h)
	}
	_ = h.conn.Close()
}

// Stream identifiers of docker's multiplexed stream.
const (
	streamStdin  byte = 0
	streamStdout byte = 1
	streamStderr byte = 2
	// streamSystem carries a message from the daemon (an error).
	streamSystem byte = 3
)

// stdWriter frames writes for one stream of a multiplexed session: an
// 8-byte header (stream, 0, 0, 0, big-endian length) and the payload.
type stdWriter struct {
	w      io.Writer
	stream byte
}

func (s *stdWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	buf := make([]byte, 8+len(p))
	buf[0] = s.stream
	binary.BigEndian.PutUint32(buf[4:], uint32(len(p)))
	copy(buf[8:], p)
	n, err := s.w.Write(buf)
	if err != nil {
		return max(n-8, 0), err
	}
	return len(p), nil
}

// outputs returns the session's stdout and stderr writers: the raw
// connection for a terminal, else one multiplexed writer per stream.
func (h *hijacked) outputs(raw bool) (stdout, stderr io.Writer) {
	if raw {
		return h, h
	}
	return &stdWriter{w: h, stream: streamStdout}, &stdWriter{w: h, stream: streamStderr}
}
