package logs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"github.com/Graylog2/go-gelf/gelf"

	"github.com/berth-dev/berth/runtime/logfile"
)

// gelfSink sends GELF messages as dockerd's gelf driver builds them,
// encoded by Graylog's client: over UDP with its writer (chunking,
// compression); over TCP as its TCPWriter frames them (the JSON, then a
// null byte) but on a connection of our own with a write deadline:
// TCPWriter writes without one and redials while holding its lock, so an
// endpoint that accepts and never reads would hold the forwarder forever,
// past Remove and Close.
type gelfSink struct {
	w        gelf.Writer // UDP
	conn     net.Conn    // TCP
	hostname string
	extra    json.RawMessage
	buf      bytes.Buffer
	once     sync.Once
}

// sendTimeout bounds one write to a TCP endpoint that stopped reading.
const sendTimeout = 10 * time.Second

func (g *gelfConfig) dial(hostname string) (sink, error) {
	if hostname == "" {
		var err error
		if hostname, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("gelf: cannot access hostname to set source field")
		}
	}
	extra, err := json.Marshal(g.extra)
	if err != nil {
		return nil, err
	}
	s := &gelfSink{hostname: hostname, extra: extra}
	switch g.network {
	case "udp":
		w, err := gelf.NewUDPWriter(g.address)
		if err != nil {
			return nil, fmt.Errorf("gelf: cannot connect to GELF endpoint: %s %v", g.address, err)
		}
		w.CompressionLevel = g.compressionLevel
		switch g.compressionType {
		case "zlib":
			w.CompressionType = gelf.CompressZlib
		case "none":
			w.CompressionType = gelf.CompressNone
		default:
			w.CompressionType = gelf.CompressGzip
		}
		s.w = w
	default:
		conn, err := net.DialTimeout("tcp", g.address, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("gelf: cannot connect to GELF endpoint: %s %v", g.address, err)
		}
		s.conn = conn
	}
	return s, nil
}

func (s *gelfSink) send(r logfile.Record) error {
	level := gelf.LOG_INFO
	if r.Stream == logfile.Stderr {
		level = gelf.LOG_ERR
	}
	m := gelf.Message{
		Version: "1.1",
		Host:    s.hostname,
		Short:   string(r.Line),
		// Milliseconds, as dockerd sends them.
		TimeUnix: float64(r.Time.UnixNano()/int64(time.Millisecond)) / 1000.0,
		Level:    int32(level),
		RawExtra: s.extra,
	}
	if s.conn == nil {
		if err := s.w.WriteMessage(&m); err != nil {
			return fmt.Errorf("gelf: cannot send GELF message: %v", err)
		}
		return nil
	}
	s.buf.Reset()
	if err := m.MarshalJSONBuf(&s.buf); err != nil {
		return fmt.Errorf("gelf: encode message: %v", err)
	}
	s.buf.WriteByte(0)
	_ = s.conn.SetWriteDeadline(time.Now().Add(sendTimeout))
	if _, err := s.conn.Write(s.buf.Bytes()); err != nil {
		return fmt.Errorf("gelf: cannot send GELF message: %v", err)
	}
	return nil
}

// close may run while send blocks (it then fails at once).
func (s *gelfSink) close() error {
	var err error
	s.once.Do(func() {
		if s.conn != nil {
			err = s.conn.Close()
		} else {
			err = s.w.Close()
		}
	})
	return err
}

// retry never gives a record up: the forwarder waits for the endpoint
// (the file keeps what the container wrote meanwhile). Over TCP the first
// delay is gelf-tcp-reconnect-delay.
func (g *gelfConfig) retry() (time.Duration, int) {
	if g.network == "tcp" && g.reconnectDelay > 0 {
		return time.Duration(g.reconnectDelay) * time.Second, 0
	}
	return retryMin, 0
}
