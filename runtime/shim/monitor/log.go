package monitor

import (
	"bytes"

	"github.com/berth-dev/berth/runtime/logfile"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// openLog opens the container's log file as the job asks; without a path
// the output is discarded (nil Writer).
func openLog(path string, o wire.Log) (*logfile.Writer, error) {
	if path == "" {
		return nil, nil
	}
	return logfile.Open(path, logfile.Options{
		Format: logfile.Format(o.Format), MaxSize: o.MaxSize, MaxFiles: o.MaxFiles, Compress: o.Compress,
		Attrs: o.Attrs, NonBlocking: o.NonBlocking, MaxBuffer: o.MaxBuffer,
	})
}

// splitter turns one stream's bytes into log records: a record per
// newline-terminated line, partial records for each logfile.MaxLine bytes
// of a longer one. The two families differ where their readers expect
// it: containerd (CRI) cuts only lines longer than MaxLine and ends the
// stream's unterminated rest as a full line; dockerd (json-file, local)
// cuts as soon as its 16 KiB buffer is full and leaves the rest partial.
//
// The records of one read go to the writer together: one write(2) for
// the lot instead of one per line.
type splitter struct {
	log     *logfile.Writer
	stream  string
	docker  bool
	pending []byte
	// The batch: line bytes in arena, cut by ends.
	arena []byte
	ends  []int
	parts []bool
	lines []logfile.Line
}

func newSplitter(w *logfile.Writer, format, stream string) *splitter {
	return &splitter{log: w, stream: stream, docker: logfile.Format(format) != logfile.CRI}
}

func (s *splitter) emit(partial bool, line []byte) {
	s.arena = append(s.arena, line...)
	s.ends = append(s.ends, len(s.arena))
	s.parts = append(s.parts, partial)
}

// send writes the batch.
func (s *splitter) send() {
	if len(s.ends) == 0 {
		return
	}
	s.lines = s.lines[:0]
	start := 0
	for i, end := range s.ends {
		s.lines = append(s.lines, logfile.Line{Partial: s.parts[i], Line: s.arena[start:end]})
		start = end
	}
	// A failed write (disk full) must not stop the container: lose log
	// lines rather than block the process on a pipe.
	_ = s.log.WriteLines(s.stream, s.lines)
	s.arena, s.ends, s.parts = s.arena[:0], s.ends[:0], s.parts[:0]
}

func (s *splitter) write(p []byte) {
	if s.log == nil {
		return
	}
	defer s.send()
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			s.pending = append(s.pending, p...)
			s.cut()
			return
		}
		s.pending = append(s.pending, p[:i]...)
		p = p[i+1:]
		s.cut()
		s.emit(false, s.pending)
		s.pending = s.pending[:0]
	}
}

// cut takes full logfile.MaxLine chunks of the pending line as partials.
func (s *splitter) cut() {
	for len(s.pending) > logfile.MaxLine || (s.docker && len(s.pending) == logfile.MaxLine) {
		s.emit(true, s.pending[:logfile.MaxLine])
		s.pending = append(s.pending[:0], s.pending[logfile.MaxLine:]...)
	}
}

// flush writes what is left when the stream ends.
func (s *splitter) flush() {
	if s.log == nil {
		return
	}
	if len(s.pending) > 0 {
		s.emit(s.docker, s.pending)
		s.pending = s.pending[:0]
	}
	s.send()
}
