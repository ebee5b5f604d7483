// Package logfile is the on-disk side of container logs: the formats the
// shim writes a container's output in, the rotation of those files, and
// the decoding berthd's readers (engine/logs, docker logs) use. Writer and
// readers share this one package so that the two sides cannot drift.
//
// Formats:
//
//   - CRI, the kubelet's: "<RFC3339Nano> <stream> <F|P> <line>\n". The
//     kubelet rotates these files itself (ReopenContainerLog); the shim
//     never rotates them unless asked.
//   - JSON, docker's json-file: one JSON object per line,
//     {"log":"<line>\n","stream":"stdout","time":"<RFC3339Nano>"}, with
//     "attrs" when labels, env or tag options ask for them; a partial line
//     (cut at 16 KiB, or the last output of a stream without a newline) has
//     no "\n" at the end of "log", as dockerd writes it.
//   - Local, Berth's binary records (docker calls its own local format
//     internal): per record a 4-byte big-endian length n, then n bytes of
//     body (1 flag byte: bit 0 stderr, bit 1 partial; 8 bytes big-endian
//     Unix nanoseconds; the line), then n again so that a reader can walk
//     back from the end (tail). Nothing is escaped, nothing parsed.
//
// Rotation (Options.MaxSize, MaxFiles) follows dockerd's: before a write,
// a file that reached MaxSize is renamed to <path>.1 (older ones shift to
// .2, ...; the oldest beyond MaxFiles-1 is removed) and a new file is
// started; with MaxFiles 1 the file is truncated instead. With Compress,
// rotated files become <path>.N.gz, gzip with dockerd's header metadata
// ({"lastTime":...} in the extra field), compressed in the background so
// that a write never waits for it.
//
// Timestamps are strictly increasing within one Writer (equal clock
// readings get a nanosecond more), so a record's time is a cursor into the
// file chain that survives rotation and compression (see Rotated).
package logfile

import (
	"fmt"
	"time"
)

// Format is a log file's format.
type Format string

// Formats. The zero value is the kubelet's CRI format.
const (
	CRI   Format = ""
	JSON  Format = "json-file"
	Local Format = "local"
)

// Validate reports a format this package does not know.
func (f Format) Validate() error {
	switch f {
	case CRI, JSON, Local:
		return nil
	}
	return fmt.Errorf("unknown log format %q", string(f))
}

// Stream names.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// MaxLine is where a line without newline is cut into partial records:
// dockerd's copier buffer and containerd's default
// max_container_log_line_size.
const MaxLine = 16 * 1024

// Record is one log entry.
type Record struct {
	// Stream is Stdout or Stderr.
	Stream string
	Time   time.Time
	// Partial is set when the line goes on in the stream's next record
	// (or the stream ended without a newline).
	Partial bool
	// Line is the output without its newline.
	Line []byte
	// Attrs are json-file's extra attributes (labels, env, tag).
	Attrs map[string]string
}
