package logs

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"

	"github.com/berth-dev/berth/runtime/logfile"
)

// fluentdSink posts records as dockerd's fluentd driver builds them, with
// fluentd's own client (forward protocol, msgpack, acks), synchronously:
// the client's writes and ack reads have deadlines, and the forwarder
// does the retrying.
type fluentdSink struct {
	cfg  *fluentdConfig
	f    *fluent.Fluent
	once sync.Once
}

// dialTimeout bounds a connection attempt; writeTimeout a write to an
// endpoint that stopped reading, when fluentd-write-timeout is not set.
const (
	dialTimeout  = 3 * time.Second
	writeTimeout = 10 * time.Second
)

func (c *fluentdConfig) dial(string) (sink, error) {
	wt := c.writeTimeout
	if wt == 0 {
		wt = writeTimeout
	}
	f, err := fluent.New(fluent.Config{
		FluentNetwork: c.network, FluentHost: c.host, FluentPort: c.port, FluentSocketPath: c.socketPath,
		Timeout: dialTimeout, WriteTimeout: wt, ReadTimeout: wt,
		// One attempt: the forwarder retries, with its backoff, and can
		// be stopped while it does.
		MaxRetry:           1,
		BufferLimit:        c.bufferLimit,
		SubSecondPrecision: c.subSecond,
		RequestAck:         c.requestAck,
	})
	if err != nil {
		return nil, fmt.Errorf("fluentd: connect to %s: %w", c.endpoint(), err)
	}
	return &fluentdSink{cfg: c, f: f}, nil
}

func (c *fluentdConfig) endpoint() string {
	if c.network == "unix" {
		return "unix://" + c.socketPath
	}
	return c.network + "://" + c.host + ":" + strconv.Itoa(c.port)
}

func (s *fluentdSink) send(r logfile.Record) error {
	c := s.cfg
	data := map[string]string{
		"container_id": c.containerID,
		// dockerd sends the name with its leading slash.
		"container_name": "/" + strings.TrimPrefix(c.containerName, "/"),
		"source":         r.Stream,
		"log":            string(r.Line),
	}
	for k, v := range c.extra {
		data[k] = v
	}
	c.partials.mark(r, data)
	if err := s.f.PostWithTime(c.tag, r.Time, data); err != nil {
		return fmt.Errorf("fluentd: send to %s: %w", c.endpoint(), err)
	}
	return nil
}

func (s *fluentdSink) close() error {
	var err error
	s.once.Do(func() { err = s.f.Close() })
	return err
}

// partials gives a line cut into records dockerd's partial_* fields: one
// ID per line, the pieces' ordinals, and partial_last on its last piece.
type partials struct {
	streams map[string]*partialLine
	// The record last marked: a record sent again after a failure gets
	// the same fields.
	last     time.Time
	lastMeta map[string]string
}

type partialLine struct {
	id      string
	ordinal int
}

func (p *partials) mark(r logfile.Record, data map[string]string) {
	if !p.last.IsZero() && r.Time.Equal(p.last) {
		for k, v := range p.lastMeta {
			data[k] = v
		}
		return
	}
	p.last, p.lastMeta = r.Time, nil
	if p.streams == nil {
		p.streams = map[string]*partialLine{}
	}
	l := p.streams[r.Stream]
	if l == nil && !r.Partial {
		return
	}
	if l == nil {
		var b [32]byte
		_, _ = rand.Read(b[:])
		l = &partialLine{id: hex.EncodeToString(b[:])}
		p.streams[r.Stream] = l
	}
	l.ordinal++
	p.lastMeta = map[string]string{
		"partial_message": "true",
		"partial_id":      l.id,
		"partial_ordinal": strconv.Itoa(l.ordinal),
		"partial_last":    strconv.FormatBool(!r.Partial),
	}
	if !r.Partial {
		delete(p.streams, r.Stream)
	}
	for k, v := range p.lastMeta {
		data[k] = v
	}
}

// retry follows fluentd-retry-wait and fluentd-max-retries (dockerd's
// defaults: 1 s, and practically forever).
func (c *fluentdConfig) retry() (time.Duration, int) { return c.retryWait, c.maxRetries }
