package logfile

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const gzExt = ".gz"

func rotatedName(path string, i int64, ext string) string {
	return path + "." + strconv.FormatInt(i, 10) + ext
}

// File is one file of a log's chain.
type File struct {
	Path string
	// Index is 0 for the current file, N for <path>.N[.gz].
	Index int64
	// Compressed files are gzip streams.
	Compressed bool
}

// Files lists a log's files oldest first: the rotated ones by decreasing
// index, then the current file when it exists. An index with both a plain
// and a gzip file (its compression is finishing) is listed as the plain
// one.
func Files(path string) ([]File, error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	byIndex := map[int64]File{}
	current := false
	for _, e := range ents {
		name := e.Name()
		if name == base {
			current = true
			continue
		}
		rest, ok := strings.CutPrefix(name, base+".")
		if !ok {
			continue
		}
		num, gz := strings.CutSuffix(rest, gzExt)
		i, err := strconv.ParseInt(num, 10, 64)
		if err != nil || i < 1 || strconv.FormatInt(i, 10) != num {
			continue
		}
		if old, ok := byIndex[i]; ok && !old.Compressed {
			continue
		}
		byIndex[i] = File{Path: filepath.Join(dir, name), Index: i, Compressed: gz}
	}
	files := make([]File, 0, len(byIndex)+1)
	for _, f := range byIndex {
		files = append(files, f)
	}
	slices.SortFunc(files, func(a, b File) int { return int(b.Index - a.Index) })
	if current {
		files = append(files, File{Path: path})
	}
	return files, nil
}

// gzipMeta is the JSON dockerd puts in the gzip header's extra field of a
// rotated file: the time of its last record, so that a reader skips files
// older than its "since" without decompressing them.
type gzipMeta struct {
	LastTime time.Time `json:"lastTime,omitempty"`
}

// GzipLastTime returns the time of the last record recorded in a gzip
// header's extra field, false when it holds none.
func GzipLastTime(h gzip.Header) (time.Time, bool) {
	var m gzipMeta
	if len(h.Extra) == 0 || json.Unmarshal(h.Extra, &m) != nil || m.LastTime.IsZero() {
		return time.Time{}, false
	}
	return m.LastTime, true
}

// compressor gzips rotated files one at a time in its own goroutine: a
// burst of rotations never waits for it, and never runs several
// compressions at once (the shim has one P). The goroutine starts at the
// first rotation, or sweepDelay after Open to compress what a previous
// writer left: never on the container's start path.
type compressor struct {
	w       *Writer
	mu      sync.Mutex
	jobs    []compressJob
	started bool
	stopped bool
	timer   *time.Timer
	stop    chan struct{}
	wake    chan struct{}
	done    chan struct{}
}

// sweepDelay keeps the leftovers' sweep off the container's start.
const sweepDelay = 2 * time.Second

type compressJob struct {
	// gen is the Writer's rotation count when the file became <path>.1.
	gen  int64
	last time.Time
}

func newCompressor(w *Writer) *compressor {
	c := &compressor{w: w, stop: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	c.timer = time.AfterFunc(sweepDelay, c.start)
	return c
}

func (c *compressor) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.stopped {
		return
	}
	c.started = true
	go c.run()
}

func (c *compressor) add(gen int64, last time.Time) {
	c.mu.Lock()
	c.jobs = append(c.jobs, compressJob{gen: gen, last: last})
	c.mu.Unlock()
	c.start()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// stopAndWait waits for the compression in progress; queued ones stay
// undone (the next writer on this log picks them up).
func (c *compressor) stopAndWait() {
	c.timer.Stop()
	c.mu.Lock()
	c.stopped = true
	started := c.started
	c.mu.Unlock()
	if !started {
		return
	}
	close(c.stop)
	<-c.done
}

func (c *compressor) run() {
	defer close(c.done)
	c.sweep()
	worked := false
	for {
		c.mu.Lock()
		if len(c.jobs) == 0 {
			c.mu.Unlock()
			if worked {
				// The compressor's buffers (a few hundred kB) would stay
				// in the shim's RSS until the scavenger returns them:
				// every container pays for the shim's private memory.
				debug.FreeOSMemory()
				worked = false
			}
			select {
			case <-c.wake:
				continue
			case <-c.stop:
				return
			}
		}
		j := c.jobs[0]
		c.jobs = c.jobs[1:]
		c.mu.Unlock()
		select {
		case <-c.stop:
			return
		default:
		}
		c.compress(j)
		worked = true
	}
}

// sweep queues the plain rotated files a previous writer left (it was
// stopped before compressing them). This writer's own rotations, which may
// have happened already, have their jobs: they hold the first w.gen
// indices.
func (c *compressor) sweep() {
	w := c.w
	w.mu.Lock()
	defer w.mu.Unlock()
	files, err := Files(w.path)
	if err != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range files {
		if f.Index > w.gen && !f.Compressed {
			c.jobs = append(c.jobs, compressJob{gen: w.gen + 1 - f.Index})
		}
	}
}

// index is the job's file's current index; called with w.mu held.
func (c *compressor) index(j compressJob) int64 { return 1 + c.w.gen - j.gen }

func (c *compressor) compress(j compressJob) {
	w := c.w
	w.mu.Lock()
	i := c.index(j)
	if i >= int64(w.opts.MaxFiles) {
		w.mu.Unlock()
		return
	}
	src, err := os.Open(rotatedName(w.path, i, ""))
	w.mu.Unlock()
	if err != nil {
		return
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return
	}
	dir, base := filepath.Split(w.path)
	// A hidden name, which Files never lists.
	tmp, err := os.CreateTemp(dir, "."+base+".gz-*")
	if err != nil {
		return
	}
	defer os.Remove(tmp.Name())
	if err := gzipTo(tmp, src, j.last); err != nil {
		tmp.Close()
		return
	}
	if err := tmp.Close(); err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	i = c.index(j)
	plain := rotatedName(w.path, i, "")
	if i >= int64(w.opts.MaxFiles) {
		return
	}
	if cur, err := os.Stat(plain); err != nil || !os.SameFile(cur, st) {
		return
	}
	// The .gz first: a reader listing between the two steps sees both and
	// takes the plain file; never neither.
	if err := os.Rename(tmp.Name(), rotatedName(w.path, i, gzExt)); err != nil {
		return
	}
	_ = os.Remove(plain)
}

func gzipTo(dst io.Writer, src io.Reader, last time.Time) error {
	// BestSpeed: the shim compresses on its one P, beside the goroutines
	// that read the container's output.
	zw, err := gzip.NewWriterLevel(dst, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if !last.IsZero() {
		zw.Header.Extra, _ = json.Marshal(gzipMeta{LastTime: last})
	}
	if _, err := io.Copy(zw, src); err != nil {
		return err
	}
	return zw.Close()
}
