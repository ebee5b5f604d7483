package monitor

import (
	"encoding/json"
	"net"
	"sync"
	"time"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// frameConn serialises frame writes on one client connection.
type frameConn struct {
	mu   sync.Mutex
	conn net.Conn
}

// writeTimeout drops a client that stops reading, so a stuck attach never
// blocks the container's output (and thus the container).
const writeTimeout = 5 * time.Second

func (c *frameConn) write(kind byte, payload []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
	for len(payload) > wire.MaxFrame {
		if err := wire.WriteFrame(c.conn, kind, payload[:wire.MaxFrame]); err != nil {
			return err
		}
		payload = payload[wire.MaxFrame:]
	}
	return wire.WriteFrame(c.conn, kind, payload)
}

func (c *frameConn) writeExit(e *wire.Exit) error {
	b, _ := json.Marshal(e)
	return c.write(wire.FrameExit, b)
}

type attacher struct {
	fc             *frameConn
	stdout, stderr bool
	done           chan struct{}
}

// fanout sends the init's output to attached clients.
type fanout struct {
	mu       sync.Mutex
	clients  map[*attacher]struct{}
	finished *wire.Exit
}

func newFanout() *fanout { return &fanout{clients: map[*attacher]struct{}{}} }

// add runs first (the attach's answer), then registers a; if the init
// already exited a gets the exit at once.
func (f *fanout) add(a *attacher, first func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	first()
	if f.finished != nil {
		_ = a.fc.writeExit(f.finished)
		close(a.done)
		return
	}
	f.clients[a] = struct{}{}
}

func (f *fanout) remove(a *attacher) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.clients[a]; ok {
		delete(f.clients, a)
		close(a.done)
	}
}

func (f *fanout) send(kind byte, p []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for a := range f.clients {
		if (kind == wire.FrameStdout && !a.stdout) || (kind == wire.FrameStderr && !a.stderr) {
			continue
		}
		if err := a.fc.write(kind, p); err != nil {
			delete(f.clients, a)
			close(a.done)
		}
	}
}

func (f *fanout) exit(e *wire.Exit) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.finished = e
	for a := range f.clients {
		_ = a.fc.writeExit(e)
		delete(f.clients, a)
		close(a.done)
	}
}
