package dockerapi

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/logctx"
)

// requestInfo is what a request's handlers tell the logging middleware.
type requestInfo struct {
	mu  sync.Mutex
	err error
}

type infoKey struct{}

// noteError records the error a handler returned, for the log line.
func noteError(r *http.Request, err error) {
	if ri, ok := r.Context().Value(infoKey{}).(*requestInfo); ok {
		ri.mu.Lock()
		ri.err = err
		ri.mu.Unlock()
	}
}

// withLogging gives each request an ID (also in the X-Request-Id response
// header), puts a logger with it in the request's context, and logs one
// line per request when it ends: failed ones (status >= 400, or an error
// after a hijack) at warn level with the error, others at debug level.
func withLogging(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := requestID()
		start := time.Now()
		l := log.With("request", id)
		ri := &requestInfo{}
		ctx := context.WithValue(logctx.With(r.Context(), l), infoKey{}, ri)
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		rw.Header().Set("X-Request-Id", id)
		next.ServeHTTP(rw, r.WithContext(ctx))
		ri.mu.Lock()
		err := ri.err
		ri.mu.Unlock()
		attrs := []any{"method", r.Method, "path", r.URL.Path, "status", rw.status, "duration", time.Since(start)}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		switch {
		case rw.status >= 500:
			l.ErrorContext(ctx, "docker api request failed", attrs...)
		case rw.status >= 400 || err != nil:
			l.WarnContext(ctx, "docker api request failed", attrs...)
		default:
			l.DebugContext(ctx, "docker api request", attrs...)
		}
	})
}

func requestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status code; it passes flushes and hijacks
// through, which streaming and attach need.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status, w.wroteHeader = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	h, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("the connection cannot be hijacked")
	}
	w.status, w.wroteHeader = http.StatusSwitchingProtocols, true
	return h.Hijack()
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
