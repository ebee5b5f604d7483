package logfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// Options tune a Writer.
type Options struct {
	Format Format
	// MaxSize rotates the file before a write once it holds this many
	// bytes; 0 never rotates.
	MaxSize int64
	// MaxFiles is how many files are kept, the current one included; 1
	// (or 0) with MaxSize truncates the file instead of rotating it, as
	// dockerd does for max-file=1.
	MaxFiles int
	// Compress gzips rotated files in the background.
	Compress bool
	// Attrs are written into every json-file record ("attrs").
	Attrs map[string]string
	// NonBlocking queues records in memory, at most MaxBuffer bytes of
	// them, and a goroutine writes them: a slow disk then costs dropped
	// records instead of a blocked container (docker's mode=non-blocking).
	NonBlocking bool
	MaxBuffer   int64
}

// DefaultMaxBuffer is dockerd's default max-buffer-size for
// mode=non-blocking.
const DefaultMaxBuffer = 1_000_000

// ErrDropped is returned by a non-blocking Writer for a record that did
// not fit in its buffer.
var ErrDropped = errors.New("log buffer full: record dropped")

// Writer writes one container's log file. It is safe for concurrent use
// (both streams share one file).
type Writer struct {
	path  string
	opts  Options
	attrs []byte

	// mu guards the file.
	mu   sync.Mutex
	f    *os.File
	size int64
	// written is the time of the last record in the file.
	written time.Time
	// gen counts rotations; a rotated file's index is 1 + gen - its gen.
	gen    int64
	buf    []byte
	closed bool
	err    error

	// qmu guards the time of the last record (blocking Writers use mu)
	// and, in a non-blocking Writer, the queue: Write never waits for
	// the disk there.
	qmu     sync.Mutex
	last    time.Time
	queue   []queued
	queued  int64
	dropped uint64
	writing bool
	qclosed bool
	wake    *sync.Cond
	idle    *sync.Cond

	comp *compressor
}

type queued struct {
	b    []byte
	t    time.Time
	size int64
}

// Open opens (or creates) path for appending records.
func Open(path string, o Options) (*Writer, error) {
	if err := o.Format.Validate(); err != nil {
		return nil, err
	}
	if o.MaxSize < 0 || o.MaxFiles < 0 || o.MaxBuffer < 0 {
		return nil, fmt.Errorf("log options: negative size or count")
	}
	w := &Writer{path: path, opts: o}
	if len(o.Attrs) > 0 && o.Format == JSON {
		w.attrs, _ = json.Marshal(o.Attrs)
	}
	w.wake = sync.NewCond(&w.qmu)
	w.idle = sync.NewCond(&w.qmu)
	if err := w.open(); err != nil {
		return nil, err
	}
	if o.Compress && o.MaxSize > 0 && o.MaxFiles > 1 {
		w.comp = newCompressor(w)
	}
	if o.NonBlocking {
		if w.opts.MaxBuffer == 0 {
			w.opts.MaxBuffer = DefaultMaxBuffer
		}
		go w.drain()
	}
	return w, nil
}

// open opens the file at w.path; called with mu held (or before use).
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("open container log %s: %w", w.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open container log %s: %w", w.path, err)
	}
	w.f, w.size = f, st.Size()
	return nil
}

// Reopen closes the file and opens path again, so that a rotator that
// renamed it (the kubelet, CRI ReopenContainerLog) gets a fresh file.
func (w *Writer) Reopen() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return fmt.Errorf("reopen container log %s: %w", w.path, os.ErrClosed)
	}
	old := w.f
	if err := w.open(); err != nil {
		return err
	}
	_ = old.Close()
	return nil
}

// next returns the time of a new record: now, or a nanosecond after the
// last one. Called with the lock that guards last.
func (w *Writer) next() time.Time {
	t := time.Now()
	if !t.After(w.last) {
		t = w.last.Add(time.Nanosecond)
	}
	w.last = t
	return t
}

// Line is one record's content for WriteLines.
type Line struct {
	Partial bool
	Line    []byte
}

// Write appends one record. A blocking Writer returns the write's error;
// a non-blocking one returns ErrDropped when its buffer is full. Callers
// that must not stop a container on a full disk ignore the error.
func (w *Writer) Write(stream string, partial bool, line []byte) error {
	return w.WriteLines(stream, []Line{{Partial: partial, Line: line}})
}

// WriteLines appends records of one stream with one write where it can
// (the output of one read of the container's pipe): the file is still
// rotated before the first record that finds it full.
func (w *Writer) WriteLines(stream string, lines []Line) error {
	if w.opts.NonBlocking {
		return w.enqueue(stream, lines)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return os.ErrClosed
	}
	w.buf = w.buf[:0]
	var last time.Time
	var firstErr error
	for _, l := range lines {
		if w.opts.MaxSize > 0 && w.size+int64(len(w.buf)) >= w.opts.MaxSize && len(w.buf) > 0 {
			if err := w.writeLocked(w.buf, last); err != nil && firstErr == nil {
				firstErr = err
			}
			w.buf = w.buf[:0]
		}
		last = w.next()
		w.buf = appendRecord(w.buf, w.opts.Format, stream, last, l.Partial, l.Line, w.attrs)
	}
	if len(w.buf) > 0 {
		if err := w.writeLocked(w.buf, last); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	return firstErr
}

func (w *Writer) enqueue(stream string, lines []Line) error {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	if w.qclosed {
		return os.ErrClosed
	}
	var err error
	for _, l := range lines {
		// Counted as dockerd's ring buffer counts: the line.
		size := int64(len(l.Line))
		if w.queued+size > w.opts.MaxBuffer && len(w.queue) > 0 {
			w.dropped++
			err = ErrDropped
			continue
		}
		t := w.next()
		w.queue = append(w.queue, queued{b: appendRecord(nil, w.opts.Format, stream, t, l.Partial, l.Line, w.attrs), t: t, size: size})
		w.queued += size
	}
	w.wake.Signal()
	return err
}

// writeLocked rotates if the file is full, then writes b, ending with a
// record of time t. A short write is undone so that the file never ends
// in half a record.
func (w *Writer) writeLocked(b []byte, t time.Time) error {
	if w.opts.MaxSize > 0 && w.size >= w.opts.MaxSize {
		if err := w.rotate(); err != nil {
			w.err = err
			return err
		}
	}
	n, err := w.f.Write(b)
	if err != nil {
		if n > 0 {
			// ENOSPC mid-record: cut it off again.
			_ = w.f.Truncate(w.size)
		}
		w.err = err
		return fmt.Errorf("write container log %s: %w", w.path, err)
	}
	w.size += int64(n)
	w.written = t
	return nil
}

// rotate moves the full file away and starts a new one; called with mu
// held. Renames only: compression happens in the background.
func (w *Writer) rotate() error {
	if w.opts.MaxFiles <= 1 {
		if err := w.f.Truncate(0); err != nil {
			return fmt.Errorf("truncate container log %s: %w", w.path, err)
		}
		w.size = 0
		return nil
	}
	last := int64(w.opts.MaxFiles - 1)
	for _, ext := range []string{"", gzExt} {
		if err := os.Remove(rotatedName(w.path, last, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("rotate container log: %w", err)
		}
	}
	for i := last; i > 1; i-- {
		for _, ext := range []string{"", gzExt} {
			if err := os.Rename(rotatedName(w.path, i-1, ext), rotatedName(w.path, i, ext)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("rotate container log: %w", err)
			}
		}
	}
	if err := os.Rename(w.path, rotatedName(w.path, 1, "")); err != nil {
		return fmt.Errorf("rotate container log: %w", err)
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		// Go on writing to the renamed file rather than lose output.
		return fmt.Errorf("rotate container log: %w", err)
	}
	_ = w.f.Close()
	w.f, w.size = f, 0
	w.gen++
	if w.comp != nil {
		w.comp.add(w.gen, w.written)
	}
	return nil
}

// drain is the non-blocking Writer's goroutine: it writes what Write
// queued, in batches, until Close.
func (w *Writer) drain() {
	w.qmu.Lock()
	for {
		for len(w.queue) == 0 && !w.qclosed {
			w.idle.Broadcast()
			w.wake.Wait()
		}
		if len(w.queue) == 0 {
			w.idle.Broadcast()
			w.qmu.Unlock()
			return
		}
		q := w.queue
		w.queue = nil
		w.writing = true
		w.qmu.Unlock()

		w.mu.Lock()
		var batch []byte
		var bt time.Time
		for _, r := range q {
			// A batch never crosses a rotation.
			if w.opts.MaxSize > 0 && len(batch) > 0 && w.size+int64(len(batch)) >= w.opts.MaxSize {
				_ = w.writeLocked(batch, bt)
				batch = batch[:0]
			}
			batch = append(batch, r.b...)
			bt = r.t
		}
		if len(batch) > 0 {
			_ = w.writeLocked(batch, bt)
		}
		w.mu.Unlock()

		w.qmu.Lock()
		for _, r := range q {
			w.queued -= r.size
		}
		w.writing = false
	}
}

// Flush waits until a non-blocking Writer has written what it queued, or
// until timeout.
func (w *Writer) Flush(timeout time.Duration) {
	if !w.opts.NonBlocking {
		return
	}
	done := make(chan struct{})
	go func() {
		w.qmu.Lock()
		for len(w.queue) > 0 || w.writing {
			w.idle.Wait()
		}
		w.qmu.Unlock()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// Dropped is how many records a non-blocking Writer dropped.
func (w *Writer) Dropped() uint64 {
	w.qmu.Lock()
	defer w.qmu.Unlock()
	return w.dropped
}

// Err is the last write or rotation error, nil when none happened.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close writes what is queued, waits for a compression in progress and
// closes the file.
func (w *Writer) Close() error {
	if w.opts.NonBlocking {
		w.qmu.Lock()
		w.qclosed = true
		w.wake.Broadcast()
		for len(w.queue) > 0 || w.writing {
			w.idle.Wait()
		}
		w.qmu.Unlock()
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return nil
	}
	w.closed = true
	err := w.f.Close()
	w.mu.Unlock()
	if w.comp != nil {
		w.comp.stopAndWait()
	}
	return err
}
