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
type splitter struct {
	log     *logfile.Writer
	stream  string
	docker  bool
	pending []byte
}

func newSplitter(w *logfile.Writer, format, stream string) *splitter {
	return &splitter{log: w, stream: stream, docker: logfile.Format(format) != logfile.CRI}
}

func (s *splitter) emit(partial bool, line []byte) {
	if s.log != nil {
		// A failed write (disk full) must not stop the container: lose
		// log lines rather than block the process on a pipe.
		_ = s.log.Write(s.stream, partial, line)
	}
}

func (s *splitter) write(p []byte) {
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

// cut writes full logfile.MaxLine chunks of the pending line as partials.
func (s *splitter) cut() {
	for len(s.pending) > logfile.MaxLine || (s.docker && len(s.pending) == logfile.MaxLine) {
		s.emit(true, s.pending[:logfile.MaxLine])
		s.pending = append(s.pending[:0], s.pending[logfile.MaxLine:]...)
	}
}

// flush writes what is left when the stream ends.
func (s *splitter) flush() {
	if len(s.pending) > 0 {
		s.emit(s.docker, s.pending)
		s.pending = s.pending[:0]
	}
}
