package logs

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/Graylog2/go-gelf/gelf"

	"github.com/berth-dev/berth/runtime/logfile"
)

// gelfSink sends GELF messages as dockerd's gelf driver builds them, over
// Graylog's own client (chunking, compression, TCP's null delimiter).
type gelfSink struct {
	w        gelf.Writer
	hostname string
	extra    json.RawMessage
}

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
		w, err := gelf.NewTCPWriter(g.address)
		if err != nil {
			return nil, fmt.Errorf("gelf: cannot connect to GELF endpoint: %s %v", g.address, err)
		}
		// go-gelf multiplies the delay by a second, as dockerd sets it.
		w.MaxReconnect, w.ReconnectDelay = g.maxReconnect, time.Duration(g.reconnectDelay)
		s.w = w
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
	if err := s.w.WriteMessage(&m); err != nil {
		return fmt.Errorf("gelf: cannot send GELF message: %v", err)
	}
	return nil
}

func (s *gelfSink) close() error { return s.w.Close() }

func (g *gelfConfig) retry() (time.Duration, int) { return retryMin, 0 }
