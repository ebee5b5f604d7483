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
	// Stopped is closed once the container has exited: Read then sends
	// what is left, reading until the file has stopped growing for a poll
	// (the shim may still be writing what the container wrote last), and
	// returns. Nil: until ctx ends.
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

// Message is one record of a container's log, as dockerd's log readers
// hand them to its logs endpoint.
type Message struct {
	// Stream is "stdout" or "stderr".
	Stream string
	Time   time.Time
	// Line is the output with its newline, without one for a partial
	// record (a line cut at 16 KiB, or output that did not end a line).
	Line []byte
	// Attrs are json-file's attrs (labels, env, tag): docker logs
	// --details.
	Attrs map[string]string
	// Err is set, alone, for a record or file that could not be read;
	// dockerd writes "Error grabbing logs: <Err>" into the stream (the
	// Systemerr stream when multiplexed) and goes on.
	Err error
}

// Messages calls fn with each record of the container's log that o
// selects, in order, until the log ends (or, following, until ctx ends or
// the container stopped). fn's error ends it and is returned. Like Read,
// it returns ErrReadNotSupported or an invalid argument before calling fn
// when the log cannot be read at all. Timestamps, Details and the TTY are
// for the caller to apply; Line is valid only during the call.
func (m *Manager) Messages(ctx context.Context, c Container, o ReadOptions, fn func(Message) error) error {
	return m.messages(ctx, c, o, fn, nil)
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
	out := newStreamWriter(w, !c.TTY)
	err := m.messages(ctx, c, o, func(msg Message) error {
		if msg.Err != nil {
			return out.frame(stdcopy.Systemerr, []byte("Error grabbing logs: "+msg.Err.Error()+"\n"))
		}
		return out.message(msg, o)
	}, out.flush)
	if err != nil {
		return err
	}
	return out.flush()
}

// messages is Messages; idle, when set, is called whenever it is about
// to wait for more output.
func (m *Manager) messages(ctx context.Context, c Container, o ReadOptions, fn func(Message) error, idle func() error) error {
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
	// draining: the container stopped; read on until a pass finds
	// nothing new (quiet): the shim may still be writing output the
	// container wrote just before its exit (it records the exit after at
	// most 2 s of draining).
	draining, quiet := false, false
	var timer *time.Timer
	var line []byte
	for {
		rec, err := fl.next()
		if err == nil {
			quiet = false
			if !o.Since.IsZero() && rec.Time.Before(o.Since) {
				continue
			}
			if !o.Until.IsZero() && rec.Time.After(o.Until) {
				return nil
			}
			if (rec.Stream == logfile.Stderr && !o.Stderr) || (rec.Stream != logfile.Stderr && !o.Stdout) {
				continue
			}
			line = append(line[:0], rec.Line...)
			if !rec.Partial {
				line = append(line, '\n')
			}
			stream := logfile.Stdout
			if rec.Stream == logfile.Stderr {
				stream = logfile.Stderr
			}
			if err := fn(Message{Stream: stream, Time: rec.Time, Line: line, Attrs: rec.Attrs}); err != nil {
				return err
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			if err := fn(Message{Err: err}); err != nil {
				return err
			}
			if fl.sc != nil {
				continue
			}
			// The chain itself cannot be listed: nothing more to read.
			return nil
		}
		if idle != nil {
			if err := idle(); err != nil {
				return err
			}
		}
		if !o.Follow || (draining && quiet) {
			return nil
		}
		if draining {
			quiet = true
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
			if !draining {
				draining = true
				// Stopped stays closed: from now on wait on the timer.
				o.Stopped = nil
			}
		case <-timer.C:
		}
	}
}

// seekEnd positions the follower after the last record written so far:
// at the end of the current file, with the cursor at the newest record of
// the chain, so that a rotation before anything new was read does not
// send it back to older files.
func (fl *follower) seekEnd() error {
	files, err := stableFiles(fl.path)
	if errors.Is(err, io.EOF) || len(files) == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	for i := len(files) - 1; i >= 0; i-- {
		if t, ok, err := lastTime(files[i].File, fl.format); err == nil && ok {
			fl.cursor = t
			break
		}
	}
	cur := files[len(files)-1]
	if cur.Index != 0 {
		// Between a rename and the new file: the next one is new.
		return nil
	}
	f, err := os.Open(cur.Path)
	if err != nil {
		return nil
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	off, _, err := logfile.TailOffset(f, st.Size(), fl.format, 0)
	if err != nil {
		f.Close()
		return err
	}
	return fl.use(f, cur.File, off)
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

func (s *streamWriter) message(m Message, o ReadOptions) error {
	b := s.buf[:0]
	if o.Timestamps {
		b = m.Time.UTC().AppendFormat(b, TimestampFormat)
		b = append(b, ' ')
	}
	if o.Details {
		b = AppendAttrs(b, m.Attrs)
		b = append(b, ' ')
	}
	b = append(b, m.Line...)
	s.buf = b
	stream := stdcopy.Stdout
	if m.Stream == logfile.Stderr {
		stream = stdcopy.Stderr
	}
	return s.frame(stream, b)
}

// TimestampFormat is docker logs --timestamps' (jsonmessage's
// RFC3339NanoFixed).
const TimestampFormat = "2006-01-02T15:04:05.000000000Z07:00"

// AppendAttrs writes attrs as docker logs --details does: sorted,
// query-escaped k=v pairs joined by commas.
func AppendAttrs(b []byte, attrs map[string]string) []byte {
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
