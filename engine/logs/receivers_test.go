package logs

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/Graylog2/go-gelf/gelf"
	"github.com/fluent/fluent-logger-golang/fluent"
)

// The receivers below are real endpoints on 127.0.0.1 that decode what
// arrives with the wire formats' own libraries: go-gelf's Reader (UDP
// chunks, gzip and zlib) and Message decoding, fluent-logger's msgp
// Message types.

// gelfUDP receives GELF over UDP.
func gelfUDP(t *testing.T) (addr string, msgs <-chan *gelf.Message) {
	t.Helper()
	r, err := gelf.NewReader("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan *gelf.Message, 1000)
	go func() {
		for {
			m, err := r.ReadMessage()
			if err != nil {
				return
			}
			ch <- m
		}
	}()
	// go-gelf's Reader has no Close: its socket and goroutine stay until
	// the test binary exits.
	return r.Addr(), ch
}

// gelfTCP receives GELF over TCP: null-delimited JSON messages.
func gelfTCP(t *testing.T) (addr string, msgs <-chan *gelf.Message) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	ch := make(chan *gelf.Message, 1000)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					b, err := br.ReadBytes(0)
					if err != nil {
						return
					}
					m := new(gelf.Message)
					if err := m.UnmarshalJSON(b[:len(b)-1]); err != nil {
						t.Errorf("gelf over tcp: %v: %q", err, b)
						return
					}
					ch <- m
				}
			}()
		}
	}()
	return l.Addr().String(), ch
}

// fluentEvent is one event as a fluentd forward input receives it.
type fluentEvent struct {
	tag    string
	time   time.Time
	record map[string]any
}

// fluentdServer is a forward-protocol input: Message mode (fluent-logger's
// default), MessageExt with sub-second times, acks when asked.
type fluentdServer struct {
	l         net.Listener
	subSecond bool
	events    chan fluentEvent
	mu        sync.Mutex
	conns     []net.Conn
}

func newFluentd(t *testing.T, addr string, subSecond bool) *fluentdServer {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &fluentdServer{l: l, subSecond: subSecond, events: make(chan fluentEvent, 10000)}
	t.Cleanup(s.close)
	go s.serve(t)
	return s
}

func (s *fluentdServer) addr() string { return s.l.Addr().String() }

func (s *fluentdServer) close() {
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *fluentdServer) serve(t *testing.T) {
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		go func() {
			defer c.Close()
			var buf []byte
			chunk := make([]byte, 64*1024)
			for {
				n, err := c.Read(chunk)
				if err != nil {
					return
				}
				buf = append(buf, chunk[:n]...)
				for len(buf) > 0 {
					ev, option, rest, err := s.decode(buf)
					if err != nil {
						break // an incomplete event: read more
					}
					buf = rest
					s.events <- ev
					if ack := option["chunk"]; ack != "" {
						b, _ := fluent.AckResp{Ack: ack}.MarshalMsg(nil)
						if _, err := c.Write(b); err != nil {
							return
						}
					}
				}
			}
		}()
	}
}

func (s *fluentdServer) decode(b []byte) (fluentEvent, map[string]string, []byte, error) {
	if s.subSecond {
		var m fluent.MessageExt
		rest, err := m.UnmarshalMsg(b)
		if err != nil {
			return fluentEvent{}, nil, nil, err
		}
		rec, ok := m.Record.(map[string]any)
		if !ok {
			return fluentEvent{}, nil, nil, fmt.Errorf("record %T", m.Record)
		}
		return fluentEvent{tag: m.Tag, time: time.Time(m.Time), record: rec}, m.Option, rest, nil
	}
	var m fluent.Message
	rest, err := m.UnmarshalMsg(b)
	if err != nil {
		return fluentEvent{}, nil, nil, err
	}
	rec, ok := m.Record.(map[string]any)
	if !ok {
		return fluentEvent{}, nil, nil, fmt.Errorf("record %T", m.Record)
	}
	return fluentEvent{tag: m.Tag, time: time.Unix(m.Time, 0), record: rec}, m.Option, rest, nil
}

// freeAddr is a 127.0.0.1 port nobody listens on (yet).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func receive[T any](t *testing.T, ch <-chan T, n int, within time.Duration) []T {
	t.Helper()
	var out []T
	deadline := time.After(within)
	for len(out) < n {
		select {
		case v := <-ch:
			out = append(out, v)
		case <-deadline:
			t.Fatalf("received %d of %d within %v", len(out), n, within)
		}
	}
	return out
}

// nothingMore checks that no more arrives for a while.
func nothingMore[T any](t *testing.T, ch <-chan T, d time.Duration) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("unexpected extra message %+v", v)
	case <-time.After(d):
	}
}
