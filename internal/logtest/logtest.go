// Package logtest has real log-driver endpoints for tests, on 127.0.0.1,
// that decode what arrives with the wire formats' own libraries: go-gelf's
// Reader (UDP chunks, gzip and zlib) and Message decoding, fluent-logger's
// msgp Message types. The engine's driver tests and the end-to-end tests
// with the docker CLI use the same ones.
package logtest

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

// GelfUDP receives GELF over UDP.
func GelfUDP(t *testing.T) (addr string, msgs <-chan *gelf.Message) {
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

// GelfTCP receives GELF over TCP: null-delimited JSON messages.
func GelfTCP(t *testing.T) (addr string, msgs <-chan *gelf.Message) {
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

// Event is one event as a fluentd forward input receives it.
type Event struct {
	Tag    string
	Time   time.Time
	Record map[string]any
}

// Fluentd is a forward-protocol input: Message mode (fluent-logger's
// default), MessageExt with sub-second times, acks when asked.
type Fluentd struct {
	l         net.Listener
	subSecond bool
	// Events are the events received, in order.
	Events chan Event
	mu     sync.Mutex
	conns  []net.Conn
}

// NewFluentd listens on addr ("127.0.0.1:0" for any port); with
// subSecond it decodes MessageExt (fluentd-sub-second-precision).
func NewFluentd(t *testing.T, addr string, subSecond bool) *Fluentd {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &Fluentd{l: l, subSecond: subSecond, Events: make(chan Event, 10000)}
	t.Cleanup(s.Close)
	go s.serve(t)
	return s
}

// Addr is where it listens.
func (s *Fluentd) Addr() string { return s.l.Addr().String() }

// Close stops listening and drops the connections (a dead endpoint).
func (s *Fluentd) Close() {
	s.l.Close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
}

func (s *Fluentd) serve(t *testing.T) {
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
					s.Events <- ev
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

func (s *Fluentd) decode(b []byte) (Event, map[string]string, []byte, error) {
	if s.subSecond {
		var m fluent.MessageExt
		rest, err := m.UnmarshalMsg(b)
		if err != nil {
			return Event{}, nil, nil, err
		}
		rec, ok := m.Record.(map[string]any)
		if !ok {
			return Event{}, nil, nil, fmt.Errorf("record %T", m.Record)
		}
		return Event{Tag: m.Tag, Time: time.Time(m.Time), Record: rec}, m.Option, rest, nil
	}
	var m fluent.Message
	rest, err := m.UnmarshalMsg(b)
	if err != nil {
		return Event{}, nil, nil, err
	}
	rec, ok := m.Record.(map[string]any)
	if !ok {
		return Event{}, nil, nil, fmt.Errorf("record %T", m.Record)
	}
	return Event{Tag: m.Tag, Time: time.Unix(m.Time, 0), Record: rec}, m.Option, rest, nil
}
