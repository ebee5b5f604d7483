package logfile

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrCorrupt is returned for bytes that are not a record of the format.
var ErrCorrupt = errors.New("corrupt log record")

// maxLocalRecord bounds a local record's length field so that a corrupt
// length cannot make a reader allocate gigabytes; the shim writes at most
// MaxLine bytes of line per record.
const maxLocalRecord = 1 << 20

// split returns the length of the first complete record in b, or 0 when b
// holds no complete record yet. A line format's record ends with its
// newline.
func split(f Format, b []byte) (int, error) {
	if f != Local {
		i := bytes.IndexByte(b, '\n')
		return i + 1, nil
	}
	if len(b) < 4 {
		return 0, nil
	}
	n := binary.BigEndian.Uint32(b)
	if n < localHeader || n > maxLocalRecord {
		return 0, fmt.Errorf("local record length %d: %w", n, ErrCorrupt)
	}
	total := int(n) + 8
	if len(b) < total {
		return 0, nil
	}
	if binary.BigEndian.Uint32(b[total-4:]) != n {
		return 0, fmt.Errorf("local record trailer differs from its length %d: %w", n, ErrCorrupt)
	}
	return total, nil
}

// Decode decodes one complete record of format f (a line with its
// newline, or a whole local record). Line may point into b.
func Decode(f Format, b []byte) (Record, error) {
	switch f {
	case JSON:
		return ParseJSON(bytes.TrimSuffix(b, []byte{'\n'}))
	case Local:
		return decodeLocal(b)
	}
	return ParseCRI(bytes.TrimSuffix(b, []byte{'\n'}))
}

func decodeLocal(b []byte) (Record, error) {
	if len(b) < 8+localHeader {
		return Record{}, fmt.Errorf("local record of %d bytes: %w", len(b), ErrCorrupt)
	}
	n := binary.BigEndian.Uint32(b)
	if int(n)+8 != len(b) || binary.BigEndian.Uint32(b[len(b)-4:]) != n {
		return Record{}, fmt.Errorf("local record length %d in %d bytes: %w", n, len(b), ErrCorrupt)
	}
	body := b[4 : len(b)-4]
	r := Record{Stream: Stdout, Partial: body[0]&flagPartial != 0, Time: time.Unix(0, int64(binary.BigEndian.Uint64(body[1:9]))).UTC(), Line: body[9:]}
	if body[0]&flagStderr != 0 {
		r.Stream = Stderr
	}
	return r, nil
}

// ParseCRI parses one CRI log line (without its newline).
func ParseCRI(line []byte) (Record, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("CRI log line without stream: %w", ErrCorrupt)
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return Record{}, fmt.Errorf("CRI log line time: %w: %w", ErrCorrupt, err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok {
		return Record{}, fmt.Errorf("CRI log line without tag: %w", ErrCorrupt)
	}
	r := Record{Stream: string(stream), Time: t}
	tag, content, _ := bytes.Cut(rest, []byte{' '})
	switch string(tag) {
	case "F":
	case "P":
		r.Partial = true
	default:
		return Record{}, fmt.Errorf("CRI log line tag %q: %w", tag, ErrCorrupt)
	}
	r.Line = content
	return r, nil
}

// jsonLog is a json-file line as dockerd's reader decodes it.
type jsonLog struct {
	Log    string            `json:"log"`
	Stream string            `json:"stream"`
	Time   time.Time         `json:"time"`
	Attrs  map[string]string `json:"attrs"`
}

// ParseJSON parses one json-file line (without its newline). Lines in the
// exact layout the shim and dockerd write take a fast path; anything else
// goes through encoding/json, as dockerd reads them, so both give the same
// record (the fuzz test checks it).
func ParseJSON(line []byte) (Record, error) {
	if r, ok := parseJSONFast(line); ok {
		return r, nil
	}
	var l jsonLog
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{}, fmt.Errorf("json-file line: %w: %w", ErrCorrupt, err)
	}
	r := Record{Stream: l.Stream, Time: l.Time, Attrs: l.Attrs, Line: []byte(l.Log)}
	r.Line, r.Partial = trimNewline(r.Line)
	return r, nil
}

func trimNewline(b []byte) ([]byte, bool) {
	if n := len(b); n > 0 && b[n-1] == '\n' {
		return b[:n-1], false
	}
	return b, true
}

// parseJSONFast parses {"log":"...","stream":"...","time":"..."} exactly;
// ok is false for any other shape (attrs, other order, spaces, escapes it
// does not handle), which the caller hands to encoding/json.
func parseJSONFast(b []byte) (r Record, ok bool) {
	rest, ok := bytes.CutPrefix(b, []byte(`{"log":"`))
	if !ok {
		return r, false
	}
	logv, rest, ok := cutJSONString(rest)
	if !ok {
		return r, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"stream":"`)); !ok {
		return r, false
	}
	stream, rest, ok := cutJSONString(rest)
	if !ok {
		return r, false
	}
	if rest, ok = bytes.CutPrefix(rest, []byte(`,"time":"`)); !ok {
		return r, false
	}
	i := bytes.IndexByte(rest, '"')
	if i < 0 || string(rest[i:]) != `"}` {
		return r, false
	}
	// time.Time's own text decoding, as encoding/json uses it.
	if err := r.Time.UnmarshalText(rest[:i]); err != nil {
		return Record{}, false
	}
	r.Stream = string(stream)
	r.Line, r.Partial = trimNewline(logv)
	return r, true
}

// cutJSONString decodes a JSON string body up to its closing quote. It
// copies only when the string has escapes.
func cutJSONString(b []byte) (s, rest []byte, ok bool) {
	i := 0
	for i < len(b) {
		c := b[i]
		if c == '"' {
			return b[:i], b[i+1:], true
		}
		if c == '\\' || c < 0x20 {
			break
		}
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				// encoding/json replaces it with U+FFFD: leave that to it.
				return nil, nil, false
			}
			i += size
			continue
		}
		i++
	}
	out := append([]byte(nil), b[:i]...)
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return out, b[i+1:], true
		case c < 0x20:
			return nil, nil, false
		case c == '\\':
			if i+1 >= len(b) {
				return nil, nil, false
			}
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = append(out, e)
				i += 2
			case 'n':
				out = append(out, '\n')
				i += 2
			case 'r':
				out = append(out, '\r')
				i += 2
			case 't':
				out = append(out, '\t')
				i += 2
			case 'b':
				out = append(out, '\b')
				i += 2
			case 'f':
				out = append(out, '\f')
				i += 2
			case 'u':
				if i+6 > len(b) {
					return nil, nil, false
				}
				v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16)
				if err != nil || utf16.IsSurrogate(rune(v)) {
					// Surrogate pairs: encoding/json's rules.
					return nil, nil, false
				}
				out = utf8.AppendRune(out, rune(v))
				i += 6
			default:
				return nil, nil, false
			}
		case c >= utf8.RuneSelf:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, nil, false
			}
			out = append(out, b[i:i+size]...)
			i += size
		default:
			out = append(out, c)
			i++
		}
	}
	return nil, nil, false
}

// Scanner reads the records of one file in order. At the end of the data
// Next returns io.EOF and keeps an incomplete last record buffered; called
// again after the file grew, it goes on from there (following a file the
// shim appends to).
type Scanner struct {
	r      io.Reader
	f      Format
	buf    []byte
	start  int
	end    int
	offset int64
}

// NewScanner reads records of format f from r.
func NewScanner(r io.Reader, f Format) *Scanner {
	return &Scanner{r: r, f: f, buf: make([]byte, 64*1024)}
}

// Next returns the next complete record; its Line is valid until the next
// call. Bytes that cannot start a record give an error wrapping ErrCorrupt
// (a line that does not parse is skipped after its error: the next call
// goes on with the following line).
func (s *Scanner) Next() (Record, error) {
	for {
		n, err := split(s.f, s.buf[s.start:s.end])
		if err != nil {
			return Record{}, err
		}
		if n > 0 {
			b := s.buf[s.start : s.start+n]
			s.start += n
			s.offset += int64(n)
			return Decode(s.f, b)
		}
		if err := s.fill(); err != nil {
			return Record{}, err
		}
	}
}

// fill reads more data, growing the buffer for a long line.
func (s *Scanner) fill() error {
	if s.start > 0 {
		s.end = copy(s.buf, s.buf[s.start:s.end])
		s.start = 0
	}
	if s.end == len(s.buf) {
		if len(s.buf) >= 2*maxLocalRecord {
			// A "line" this long is no log file of ours.
			return fmt.Errorf("record over %d bytes: %w", len(s.buf), ErrCorrupt)
		}
		s.buf = append(s.buf, make([]byte, len(s.buf))...)
	}
	n, err := s.r.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// Offset is the number of bytes of complete records returned so far.
func (s *Scanner) Offset() int64 { return s.offset }

// Buffered reports whether an incomplete record is waiting for more bytes.
func (s *Scanner) Buffered() bool { return s.end > s.start }

// Reset makes the scanner read from r anew, with nothing buffered, its
// offset set to offset (a file truncated under it, or reopened).
func (s *Scanner) Reset(r io.Reader, offset int64) {
	s.r, s.start, s.end, s.offset = r, 0, 0, offset
}

// TailOffset returns where the last n complete records in the first size
// bytes of r start, and how many it found there (fewer than n when the
// file holds fewer). An incomplete record at the end is not counted: with
// n 0 the offset is where the last complete record ends.
func TailOffset(r io.ReaderAt, size int64, f Format, n int) (int64, int, error) {
	if n <= 0 {
		return endOffset(r, size, f)
	}
	if f == Local {
		return tailLocal(r, size, n)
	}
	return tailLines(r, size, n)
}

// endOffset is where the last complete record ends.
func endOffset(r io.ReaderAt, size int64, f Format) (int64, int, error) {
	if f != Local {
		off, found, err := tailLines(r, size, 1)
		if err != nil || found == 0 {
			return off, 0, err
		}
		// The last complete line starts at off and ends at its newline.
		b := make([]byte, min(size-off, 2*maxLocalRecord))
		if _, err := r.ReadAt(b, off); err != nil && err != io.EOF {
			return 0, 0, err
		}
		return off + int64(bytes.IndexByte(b, '\n')) + 1, 0, nil
	}
	off, found, err := tailLocal(r, size, 1)
	if err != nil || found == 0 {
		return off, 0, err
	}
	var b [4]byte
	if _, err := r.ReadAt(b[:], off); err != nil {
		return 0, 0, err
	}
	return off + int64(binary.BigEndian.Uint32(b[:])) + 8, 0, nil
}

func tailLines(r io.ReaderAt, size int64, n int) (int64, int, error) {
	const chunk = 64 * 1024
	buf := make([]byte, chunk)
	found := 0
	// end is where the last complete line ends: just after the last
	// newline.
	end := int64(-1)
	pos := size
	for pos > 0 {
		l := min(int64(chunk), pos)
		pos -= l
		b := buf[:l]
		if _, err := r.ReadAt(b, pos); err != nil && err != io.EOF {
			return 0, 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			at := pos + int64(i) + 1
			if end < 0 {
				end = at
				continue
			}
			found++
			if found == n {
				return at, found, nil
			}
		}
	}
	if end < 0 {
		return size, 0, nil
	}
	return 0, found + 1, nil
}

func tailLocal(r io.ReaderAt, size int64, n int) (int64, int, error) {
	// Walk back by the trailers, checking each record's header; a
	// record being written at the end sends us through a forward scan.
	var b [4]byte
	pos := size
	found := 0
	for pos > 0 && found < n {
		if pos < 8+localHeader {
			return 0, 0, fmt.Errorf("local file: %d stray bytes at its start: %w", pos, ErrCorrupt)
		}
		if _, err := r.ReadAt(b[:], pos-4); err != nil {
			return 0, 0, err
		}
		l := binary.BigEndian.Uint32(b[:])
		start := pos - int64(l) - 8
		if l < localHeader || l > maxLocalRecord || start < 0 {
			if found == 0 && pos == size {
				// The writer's last record is half-written: tail from
				// before it is not possible without a forward scan.
				return tailLocalForward(r, size, n)
			}
			return 0, 0, fmt.Errorf("local record length %d at %d: %w", l, pos-4, ErrCorrupt)
		}
		if _, err := r.ReadAt(b[:], start); err != nil {
			return 0, 0, err
		}
		if binary.BigEndian.Uint32(b[:]) != l {
			if found == 0 && pos == size {
				return tailLocalForward(r, size, n)
			}
			return 0, 0, fmt.Errorf("local record at %d: header differs from trailer: %w", start, ErrCorrupt)
		}
		pos = start
		found++
	}
	return pos, found, nil
}

// tailLocalForward finds the last n complete records by reading the file
// from its start: the fallback for a file whose end is mid-record.
func tailLocalForward(r io.ReaderAt, size int64, n int) (int64, int, error) {
	s := NewScanner(io.NewSectionReader(r, 0, size), Local)
	var starts []int64
	for {
		at := s.Offset()
		if _, err := s.Next(); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, 0, err
		}
		starts = append(starts, at)
	}
	if len(starts) <= n {
		return 0, len(starts), nil
	}
	return starts[len(starts)-n], n, nil
}
