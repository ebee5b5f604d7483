package logs

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"

	"github.com/berth-dev/berth/runtime/logfile"
)

// ReadOptions are the query of GET /containers/{id}/logs.
type ReadOptions struct {
	// Stdout and Stderr select the streams; at least one is required.
	Stdout, Stderr bool
	// Follow goes on with new output (across rotations) until ctx ends or
	// Stopped is closed. dockerd follows only a running container: pass
	// Follow false for one that is not (or a closed Stopped).
	Follow bool
	// Stopped is closed once the container has exited. The shim writes
	// all of a container's output before its exit is recorded, so Read
	// then sends what is left and returns. Nil: until ctx ends.
	Stopped <-chan struct{}
	// Tail sends only the last Tail records of the log; negative sends
	// all (docker's "all"; see ParseTail).
	Tail int
	// Since and Until bound the records' times; zero is no bound. Tail
	// applies first, as dockerd does.
	Since, Until time.Time
	// Timestamps prefixes each record with its time (RFC 3339, nanoseconds
	// padded), Details with its json-file attrs (labels, env, tag).
	Timestamps bool
	Details    bool
}

// ParseTail parses the tail query as dockerd does: a number, anything
// else ("all", "", junk) means all (-1).
func ParseTail(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// ParseTime parses a since or until query: Unix seconds with an optional
// fraction ("1700000000.5"), as the docker CLI sends them and dockerd's
// timetypes.ParseTimestamps reads them. "" is the zero time.
func ParseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	secs, frac, hasFrac := strings.Cut(s, ".")
	sec, err := strconv.ParseInt(secs, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid timestamp %q: %w", s, errdefs.ErrInvalidArgument)
	}
	var nsec int64
	if hasFrac {
		n, err := strconv.ParseInt(frac, 10, 64)
		if err != nil || n < 0 || len(frac) > 9 {
			return time.Time{}, fmt.Errorf("invalid timestamp %q: %w", s, errdefs.ErrInvalidArgument)
		}
		nsec = n * int64(math.Pow10(9-len(frac)))
	}
	return time.Unix(sec, nsec), nil
}

// Read writes the container's log to w as dockerd's logs endpoint sends
// it: each record's line (with its newline, none for a partial one) in
// stdcopy frames (stdout 1, stderr 2, errors 3), or raw for a TTY
// container. It returns an error before writing anything when the log
// cannot be read at all (ErrReadNotSupported for none and cache-disabled,
// invalid arguments); once writing, a record or file it cannot read goes
// into the stream as "Error grabbing logs: ..." as dockerd does, and an
// error of w (the client left) ends it. w is flushed (when it has Flush,
// as an http.ResponseWriter) whenever Read waits for more output.
func (m *Manager) Read(ctx context.Context, c Container, o ReadOptions, w io.Writer) error {
	if !o.Stdout && !o.Stderr {
		return invalid("Bad parameters: you must choose at least one stream")
	}
	p, err := parse(c)
	if err != nil {
		return fmt.Errorf("logs of container %s: %w", c.ID, err)
	}
	if !p.readable {
		return ErrReadNotSupported
	}
	fl := &follower{path: p.path, format: logfile.Format(p.file.Format)}
	defer fl.close()
	switch {
	case o.Tail == 0:
		if err := fl.seekEnd(); err != nil {
			return fmt.Errorf("logs of container %s: %w", c.ID, err)
		}
	case o.Tail > 0:
		if err := fl.seekTail(o.Tail); err != nil {
			return fmt.Errorf("logs of container %s: %w", c.ID, err)
		}
	case !o.Since.IsZero():
		// Whole files before since are skipped unread.
		fl.cursor = o.Since.Add(-time.Nanosecond)
	}
	out := newStreamWriter(w, !c.TTY)
	draining := false
	var timer *time.Timer
	for {
		rec, err := fl.next()
		if err == nil {
			if !o.Since.IsZero() && rec.Time.Before(o.Since) {
				continue
			}
			if !o.Until.IsZero() && rec.Time.After(o.Until) {
				return out.flush()
			}
			if (rec.Stream == logfile.Stderr && !o.Stderr) || (rec.Stream != logfile.Stderr && !o.Stdout) {
				continue
			}
			if err := out.record(rec, o); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			if werr := out.frame(stdcopy.Systemerr, []byte("Error grabbing logs: "+err.Error()+"\n")); werr != nil {
				return werr
			}
			if fl.sc != nil {
				continue
			}
			// The chain itself cannot be listed: nothing more to read.
			return out.flush()
		}
		if err := out.flush(); err != nil {
			return err
		}
		if !o.Follow || draining {
			return nil
		}
		if timer == nil {
			timer = time.NewTimer(pollInterval)
			defer timer.Stop()
		} else {
			timer.Reset(pollInterval)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-o.Stopped:
			// One more pass: what the shim wrote before the exit.
			draining = true
		case <-timer.C:
		}
	}
}

// seekEnd positions the follower after the last record written so far.
func (fl *follower) seekEnd() error {
	files, err := logfile.Files(fl.path)
	if err != nil || len(files) == 0 || files[len(files)-1].Index != 0 {
		// No current file (none yet, or one being rotated): what comes
		// is what the clock says is new.
		fl.cursor = time.Now()
		return nil
	}
	cur := files[len(files)-1]
	f, err := os.Open(cur.Path)
	if err != nil {
		fl.cursor = time.Now()
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	off, _, err := logfile.TailOffset(f, st.Size(), fl.format, 0)
	f.Close()
	if err != nil {
		return err
	}
	return fl.open(cur, off)
}

// streamWriter frames records as dockerd's logs endpoint does.
type streamWriter struct {
	w   io.Writer
	bw  *bufio.Writer
	mux bool
	buf []byte
}

func newStreamWriter(w io.Writer, mux bool) *streamWriter {
	return &streamWriter{w: w, bw: bufio.NewWriterSize(w, 32*1024), mux: mux}
}

// stdcopy's header: stream, three zero bytes, big-endian length.
const stdHeader = 8

func (s *streamWriter) frame(stream stdcopy.StdType, p []byte) error {
	if s.mux {
		var h [stdHeader]byte
		h[0] = byte(stream)
		binary.BigEndian.PutUint32(h[4:], uint32(len(p)))
		if _, err := s.bw.Write(h[:]); err != nil {
			return err
		}
	}
	_, err := s.bw.Write(p)
	return err
}

func (s *streamWriter) record(r logfile.Record, o ReadOptions) error {
	b := s.buf[:0]
	if o.Timestamps {
		b = r.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000000Z07:00")
		b = append(b, ' ')
	}
	if o.Details {
		b = appendAttrs(b, r.Attrs)
		b = append(b, ' ')
	}
	b = append(b, r.Line...)
	if !r.Partial {
		b = append(b, '\n')
	}
	s.buf = b
	stream := stdcopy.Stdout
	if r.Stream == logfile.Stderr {
		stream = stdcopy.Stderr
	}
	return s.frame(stream, b)
}

// appendAttrs writes attrs as docker logs --details does: sorted,
// query-escaped k=v pairs joined by commas.
func appendAttrs(b []byte, attrs map[string]string) []byte {
	keys := make([]string, 0, len(attrs))
	for k := range attrs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, url.QueryEscape(k)...)
		b = append(b, '=')
		b = append(b, url.QueryEscape(attrs[k])...)
	}
	return b
}

func (s *streamWriter) flush() error {
	if err := s.bw.Flush(); err != nil {
		return err
	}
	switch f := s.w.(type) {
	case interface{ Flush() error }:
		return f.Flush()
	case interface{ Flush() }:
		f.Flush()
	}
	return nil
}
