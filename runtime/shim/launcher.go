package shim

import (
	"context"
	"sync"
	"time"
)

// Launcher starts shims the way Start does, but keeps one berth-shim
// started ahead of need (on standby: Go runtime up, waiting for its job on
// a pipe), so that a container's creation does not wait for the shim's
// exec and start-up (about 1.5 ms of CPU here, on the path of every
// CreateContainer). The spare is made after a Start has used the previous
// one, in the background; a Start that finds none starts a shim the cold
// way.
//
// A spare costs one idle shim (3.2 MB RSS, measured by hack/bench-cri.sh).
// It exits when its job pipe closes: at Close, or when berthd dies, since
// only berthd holds the write end. The zero Launcher is not usable; see
// NewLauncher.
type Launcher struct {
	binary string

	mu      sync.Mutex
	spare   *proc
	filling bool
	closed  bool
	// fills counts background starts, for Close.
	fills sync.WaitGroup
}

// NewLauncher returns a Launcher of the berth-shim at binary.
func NewLauncher(binary string) *Launcher {
	return &Launcher{binary: binary}
}

// Start is Start with o.Binary set to the Launcher's, using the spare
// shim when there is one.
func (l *Launcher) Start(ctx context.Context, o StartOptions) (*Client, error) {
	o.Binary = l.binary
	if err := o.prepare(); err != nil {
		return nil, err
	}
	defer l.refill()
	if p := l.take(); p != nil && p.give(o) == nil {
		return p.await(ctx, o)
	}
	// None ready, or it died on standby (someone killed it): a new one.
	return Start(ctx, o)
}

// take returns the spare, if one is still alive, and clears it.
func (l *Launcher) take() *proc {
	l.mu.Lock()
	p := l.spare
	l.spare = nil
	l.mu.Unlock()
	if p == nil {
		return nil
	}
	select {
	case <-p.exited:
		p.close()
		return nil
	default:
		return p
	}
}

// refill starts a new spare in the background unless one is there or
// coming.
func (l *Launcher) refill() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.spare != nil || l.filling {
		return
	}
	l.filling = true
	l.fills.Add(1)
	go func() {
		defer l.fills.Done()
		p, err := spawn(l.binary)
		l.mu.Lock()
		defer l.mu.Unlock()
		l.filling = false
		if err != nil {
			// The next Start goes cold and tries again.
			return
		}
		if l.closed {
			p.close()
			return
		}
		l.spare = p
	}()
}

// Close ends the spare and waits (up to 5 s, then kills it) for it to
// exit. Shims already given a container are not touched.
func (l *Launcher) Close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.fills.Wait()
	p := l.take()
	if p == nil {
		return
	}
	p.close()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}
