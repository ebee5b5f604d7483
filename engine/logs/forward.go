package logs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/berth-dev/berth/internal/atomicfile"
	"github.com/berth-dev/berth/runtime/logfile"
)

// sinkConfig is a remote driver's parsed options.
type sinkConfig interface {
	// dial connects to the endpoint (or prepares to send, for UDP).
	dial(hostname string) (sink, error)
	// retry is the first delay after a failed send (it doubles up to
	// retryMax) and how many attempts a record gets before it is given
	// up (0: no limit).
	retry() (time.Duration, int)
}

// sink sends records to one endpoint. The forwarder retries a failed
// send; a sink that failed is closed and dialled again. close may be
// called while send blocks, and more than once.
type sink interface {
	send(r logfile.Record) error
	close() error
}

// Retry delays of a send to an endpoint that fails.
const (
	retryMin = 100 * time.Millisecond
	retryMax = 5 * time.Second
	// saveEvery bounds how often the position is written.
	saveEvery = time.Second
)

// position is what forward.json keeps: the time of the last record sent.
type position struct {
	Time time.Time `json:"time"`
}

func loadPosition(dir string) time.Time {
	b, err := os.ReadFile(filepath.Join(dir, forwardAt))
	if err != nil {
		return time.Time{}
	}
	var p position
	if json.Unmarshal(b, &p) != nil {
		return time.Time{}
	}
	return p.Time
}

func savePosition(dir string, t time.Time) error {
	b, _ := json.Marshal(position{Time: t})
	// Atomic, not synced: after a power loss a few records may go twice.
	return atomicfile.Replace(filepath.Join(dir, forwardAt), b, 0o600)
}

// forwarder follows one container's cache file and sends each record to
// the remote driver.
type forwarder struct {
	id       string
	dir      string
	path     string
	cfg      sinkConfig
	hostname string
	log      *slog.Logger
	drop     bool
	max      int64

	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// stop is set by Stop: the container exited; end once everything
	// written has been sent.
	stop bool
	wake chan struct{}
	// The queue between the file's reader and the sender.
	queue   []logfile.Record
	queued  int64
	dropped uint64
	// readerDone: the reader reached the end of the file after stop.
	readerDone bool
	more       *sync.Cond
	room       *sync.Cond
}

func (m *Manager) newForwarder(c Container, p plan) *forwarder {
	f := &forwarder{
		id: c.ID, dir: c.Dir, path: p.path, cfg: p.remote, hostname: m.hostname, drop: p.dropWhenFull, max: p.maxBuffer,
		log: m.log.With("container", c.ID, "driver", p.driver), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
	if f.max <= 0 {
		f.max = logfile.DefaultMaxBuffer
	}
	f.more = sync.NewCond(&f.mu)
	f.room = sync.NewCond(&f.mu)
	return f
}

// Start begins shipping the container's output to its remote driver
// (gelf, fluentd); it does nothing for other drivers. Call it after every
// start of the container and, at berthd start-up, for every container
// with a remote driver (then Stop at once for those not running): it
// resumes after the last record sent before, so nothing is sent twice or
// skipped as long as the cache file still holds it.
func (m *Manager) Start(c Container) error {
	p, err := parse(c)
	if err != nil {
		return fmt.Errorf("forward log of container %s: %w", c.ID, err)
	}
	if p.remote == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return fmt.Errorf("forward log of container %s: log manager closed", c.ID)
	}
	if old, ok := m.forwarders[c.ID]; ok {
		// Started again before the last run's output was all sent.
		old.mu.Lock()
		reading := !old.readerDone
		if reading {
			old.stop = false
		}
		old.mu.Unlock()
		if reading {
			return nil
		}
		// Its reader ended: end it (its position is kept) and follow on
		// with a new one from there.
		old.cancel()
		<-old.done
	}
	f := m.newForwarder(c, p)
	ctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	m.forwarders[c.ID] = f
	go f.run(ctx)
	go func() {
		<-f.done
		m.mu.Lock()
		if m.forwarders[c.ID] == f {
			delete(m.forwarders, c.ID)
		}
		m.mu.Unlock()
	}()
	return nil
}

// Stop tells the container's forwarder that the container exited: it
// sends what is left in the file, then ends. It does not wait.
func (m *Manager) Stop(id string) {
	m.mu.Lock()
	f := m.forwarders[id]
	m.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	f.stop = true
	f.mu.Unlock()
	f.poke()
}

// Remove ends the container's forwarder at once, keeping its position
// (the engine removes the container's directory next).
func (m *Manager) Remove(id string) {
	m.mu.Lock()
	f := m.forwarders[id]
	delete(m.forwarders, id)
	m.mu.Unlock()
	if f != nil {
		f.cancel()
		<-f.done
	}
}

// Close ends every forwarder, keeping their positions for the next
// berthd.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	fs := make([]*forwarder, 0, len(m.forwarders))
	for _, f := range m.forwarders {
		fs = append(fs, f)
	}
	m.forwarders = map[string]*forwarder{}
	m.mu.Unlock()
	for _, f := range fs {
		f.cancel()
	}
	for _, f := range fs {
		<-f.done
	}
}

// Forwarding reports whether the container's forwarder runs (for tests
// and diagnostics).
func (m *Manager) Forwarding(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.forwarders[id]
	return ok
}

func (f *forwarder) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
	f.mu.Lock()
	f.more.Broadcast()
	f.room.Broadcast()
	f.mu.Unlock()
}

func (f *forwarder) run(ctx context.Context) {
	defer close(f.done)
	// Wakes both goroutines' waits when ctx ends. Registered for the
	// whole run: a stop by one goroutine returning first could otherwise
	// suppress the wake-up the other needs.
	stop := context.AfterFunc(ctx, f.poke)
	defer stop()
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		f.send(ctx)
	}()
	f.read(ctx)
	<-sent
}

// read follows the file from the kept position into the queue.
func (f *forwarder) read(ctx context.Context) {
	fl := &follower{path: f.path, format: logfile.Local, cursor: loadPosition(f.dir)}
	defer fl.close()
	draining := false
	for ctx.Err() == nil {
		rec, err := fl.next()
		if err == nil {
			rec.Line = append([]byte(nil), rec.Line...)
			if !f.enqueue(ctx, rec) {
				return
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			f.log.Warn("read container log for forwarding", "error", err)
			if fl.sc == nil && !errors.Is(err, fs.ErrNotExist) {
				// The chain cannot be listed: try again later.
				if !sleep(ctx, retryMax) {
					return
				}
			}
			continue
		}
		f.mu.Lock()
		stopping := f.stop
		if stopping && draining {
			f.readerDone = true
			f.more.Broadcast()
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		if stopping {
			// One more pass after Stop: the file is complete now.
			draining = true
			continue
		}
		draining = false
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		case <-time.After(pollInterval):
		}
	}
}

// enqueue hands a record to the sender: it drops the record when the
// queue is full and the mode is non-blocking, else it waits for room.
func (f *forwarder) enqueue(ctx context.Context, r logfile.Record) bool {
	size := int64(len(r.Line))
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.queued+size > f.max && len(f.queue) > 0 {
		if f.drop {
			f.dropped++
			if f.dropped == 1 || f.dropped%10000 == 0 {
				f.log.Warn("log endpoint too slow: records dropped (mode=non-blocking)", "dropped", f.dropped)
			}
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		f.room.Wait()
	}
	f.queue = append(f.queue, r)
	f.queued += size
	f.more.Signal()
	return true
}

// send ships queued records, retrying a failing endpoint with a backoff,
// and keeps the position of the last one sent.
func (f *forwarder) send(ctx context.Context) {
	var s sink
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	var last, saved time.Time
	lastSave := time.Now()
	save := func() {
		if last.After(saved) {
			if err := savePosition(f.dir, last); err != nil {
				f.log.Warn("keep forwarding position", "error", err)
				return
			}
			saved = last
		}
		lastSave = time.Now()
	}
	defer save()
	first, attempts := f.cfg.retry()
	delay := first
	failing := false
	tries := 0
	for {
		f.mu.Lock()
		for len(f.queue) == 0 && !f.readerDone && ctx.Err() == nil {
			f.mu.Unlock()
			save()
			f.mu.Lock()
			if len(f.queue) == 0 && !f.readerDone && ctx.Err() == nil {
				f.more.Wait()
			}
		}
		if ctx.Err() != nil || len(f.queue) == 0 {
			f.mu.Unlock()
			return
		}
		r := f.queue[0]
		f.mu.Unlock()

		var err error
		if s == nil {
			s, err = f.cfg.dial(f.hostname)
		}
		if err == nil {
			// Remove and Close must not wait for an endpoint that
			// stopped reading.
			cur := s
			stop := context.AfterFunc(ctx, func() { cur.close() })
			err = s.send(r)
			stop()
		}
		if err != nil {
			if !failing {
				f.log.Warn("send container log", "error", err)
				failing = true
			}
			if s != nil {
				s.close()
				s = nil
			}
			tries++
			if attempts == 0 || tries < attempts {
				if !sleep(ctx, delay) {
					return
				}
				delay = min(2*delay, max(retryMax, first))
				continue
			}
			f.log.Warn("log record given up after its retries", "retries", attempts)
		} else if failing {
			f.log.Info("log endpoint reachable again")
			failing = false
		}
		delay, tries = first, 0
		f.mu.Lock()
		f.queue = f.queue[1:]
		f.queued -= int64(len(r.Line))
		f.room.Signal()
		f.mu.Unlock()
		last = r.Time
		if time.Since(lastSave) > saveEvery {
			save()
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
