package monitor

import (
	"bytes"
	"fmt"
	"os"
	"sync"
	"time"
)

// maxLogLine is where a line without newline is cut into partial (P)
// records, as containerd's default max_container_log_line_size.
const maxLogLine = 16 * 1024

// criLog writes the kubelet's CRI log format:
//
//	<RFC3339Nano> <stdout|stderr> <F|P> <content>
//
// to one file shared by both streams.
type criLog struct {
	mu   sync.Mutex
	path string
	f    *os.File
}

func openLog(path string) (*criLog, error) {
	l := &criLog{path: path}
	if path == "" {
		return l, nil
	}
	if err := l.reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// reopen closes and opens the file again, so that a log rotator that
// renamed it gets a fresh file (CRI ReopenContainerLog).
func (l *criLog) reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open container log %s: %w", l.path, err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (l *criLog) write(stream string, partial bool, content []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	tag := " F "
	if partial {
		tag = " P "
	}
	var b bytes.Buffer
	b.Grow(len(content) + 48)
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteString(tag)
	b.Write(content)
	b.WriteByte('\n')
	// A failed write (disk full) must not stop the container: the kubelet
	// would rather lose log lines than have the process block on a pipe.
	_, _ = l.f.Write(b.Bytes())
}

func (l *criLog) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
}

// lineSplitter turns a byte stream into log records: one F record per
// newline-terminated line, P records for each maxLogLine of a longer one.
type lineSplitter struct {
	log     *criLog
	stream  string
	pending []byte
}

func (s *lineSplitter) write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			p = nil
		} else {
			s.pending = append(s.pending, p[:i]...)
			p = p[i+1:]
			s.emitLong()
			s.log.write(s.stream, false, s.pending)
			s.pending = s.pending[:0]
			continue
		}
		s.emitLong()
	}
}

// emitLong writes full maxLogLine chunks of the pending line as partials.
func (s *lineSplitter) emitLong() {
	for len(s.pending) > maxLogLine {
		s.log.write(s.stream, true, s.pending[:maxLogLine])
		s.pending = append(s.pending[:0], s.pending[maxLogLine:]...)
	}
}

// flush writes what is left at the end of the stream as a full line, like
// containerd does, so no output is lost.
func (s *lineSplitter) flush() {
	if len(s.pending) > 0 {
		s.log.write(s.stream, false, s.pending)
		s.pending = s.pending[:0]
	}
}
