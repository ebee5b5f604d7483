package dockerapi

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/berth-dev/berth/engine/logs"
)

// containerLogs is GET /containers/{name}/logs: the log, multiplexed
// (raw for a terminal), optionally followed. engine/logs writes it; the
// 200 and its headers go out with the first bytes, so that a refusal
// (unknown container, a driver that keeps nothing) still gets its status.
func (s *server) containerLogs(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	o := logs.ReadOptions{
		Stdout: boolValue(r, "stdout"), Stderr: boolValue(r, "stderr"), Follow: boolValue(r, "follow"),
		Timestamps: boolValue(r, "timestamps"), Details: boolValue(r, "details"),
		Tail: logs.ParseTail(q.Get("tail")),
	}
	var err error
	if o.Since, err = apiTime(q.Get("since")); err != nil {
		return err
	}
	if o.Until, err = apiTime(q.Get("until")); err != nil {
		return err
	}
	c, err := s.engine.Inspect(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	ct := multiplexedStream
	if c.Config.Tty || versionBelow(r, "1.42") {
		ct = rawStream
	}
	lw := &lazyHeaders{w: w, contentType: ct}
	if err := s.engine.Logs(r.Context(), c.ID, o, lw); err != nil {
		if !lw.started {
			return err
		}
		noteError(r, err)
	}
	lw.start()
	return nil
}

// lazyHeaders sends the 200 and its headers with the first write.
type lazyHeaders struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (l *lazyHeaders) start() {
	if !l.started {
		l.started = true
		l.w.Header().Set("Content-Type", l.contentType)
		l.w.WriteHeader(http.StatusOK)
	}
}

func (l *lazyHeaders) Write(p []byte) (int, error) {
	l.start()
	return l.w.Write(p)
}

// Flush passes flushes on (engine/logs flushes while it follows).
func (l *lazyHeaders) Flush() {
	l.start()
	if f, ok := l.w.(http.Flusher); ok {
		f.Flush()
	}
}

// apiTime reads docker's since/until: seconds since the epoch with
// an optional fraction ("1700000000.000000001"); empty is none.
func apiTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	sec, frac, _ := strings.Cut(s, ".")
	n, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t, nil
		}
		return time.Time{}, invalid("invalid timestamp %q", s)
	}
	var ns int64
	if frac != "" {
		if len(frac) > 9 {
			frac = frac[:9]
		}
		f, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
		if err != nil {
			return time.Time{}, invalid("invalid timestamp %q", s)
		}
		ns = f
	}
	if n > math.MaxInt64/int64(time.Second)-1 {
		return time.Time{}, invalid("invalid timestamp %q", s)
	}
	return time.Unix(n, ns), nil
}
