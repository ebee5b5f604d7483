package logs

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Graylog2/go-gelf/gelf"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/internal/logtest"
	"github.com/berth-dev/berth/runtime/logfile"
)

// TestForwardGELF: each record of the cache reaches a GELF endpoint as
// dockerd's gelf driver sends it, over UDP with each compression and over
// TCP; docker logs still reads the cache.
func TestForwardGELF(t *testing.T) {
	for _, tc := range []struct {
		name, proto, compression string
	}{{"udp-gzip", "udp", ""}, {"udp-zlib", "udp", "zlib"}, {"udp-none", "udp", "none"}, {"tcp", "tcp", ""}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t, DefaultConfig())
			var addr string
			var msgs <-chan *gelf.Message
			if tc.proto == "udp" {
				addr, msgs = logtest.GelfUDP(t)
			} else {
				addr, msgs = logtest.GelfTCP(t)
			}
			opts := map[string]string{"gelf-address": tc.proto + "://" + addr, "labels": "app", "env": "REGION"}
			if tc.compression != "" {
				opts["gelf-compression-type"] = tc.compression
			}
			c := ctrWith(t, m, container.LogConfig{Type: GELF, Config: opts})
			c.Path, c.Args = "sh", []string{"-c", "echo hi"}
			w := shimWriter(t, m, c)
			w.Write(logfile.Stdout, false, []byte("hello gelf"))
			w.Write(logfile.Stderr, false, []byte("an error"))
			big := strings.Repeat("z", 5000) // several UDP chunks uncompressed
			w.Write(logfile.Stdout, false, []byte(big))
			if err := m.Start(c); err != nil {
				t.Fatal(err)
			}
			got := receive(t, msgs, 3, 10*time.Second)
			recs := records(t, c)
			for i, want := range []struct {
				short string
				level int32
			}{{"hello gelf", gelf.LOG_INFO}, {"an error", gelf.LOG_ERR}, {big, gelf.LOG_INFO}} {
				g := got[i]
				if g.Short != want.short || g.Level != want.level || g.Host != "node1" || g.Version != "1.1" {
					t.Errorf("message %d: %.40q level %d host %q version %q", i, g.Short, g.Level, g.Host, g.Version)
				}
				if wantTS := float64(recs[i].Time.UnixMilli()) / 1000; g.TimeUnix != wantTS {
					t.Errorf("message %d: timestamp %f, want %f", i, g.TimeUnix, wantTS)
				}
				for k, v := range map[string]any{"_container_id": c.ID, "_container_name": "web", "_image_name": "busybox", "_image_id": c.ImageID,
					"_tag": c.ID[:12], "_command": "sh -c echo hi", "_created": "2023-11-14T22:13:20Z", "_app": "shop", "_REGION": "eu"} {
					if g.Extra[k] != v {
						t.Errorf("message %d: %s = %v, want %v", i, k, g.Extra[k], v)
					}
				}
			}
			m.Stop(c.ID)
			waitNotForwarding(t, m, c.ID)
			if pos := loadPosition(c.Dir); !pos.Equal(recs[2].Time) {
				t.Errorf("kept position %v, want the last record's %v", pos, recs[2].Time)
			}
			if out, errOut := demux(t, read(t, m, c, ReadOptions{Stdout: true, Stderr: true, Tail: -1})); !strings.HasPrefix(out, "hello gelf\n") || errOut != "an error\n" {
				t.Errorf("docker logs of the cache: %.40q %q", out, errOut)
			}
		})
	}
}

func waitNotForwarding(t *testing.T, m *Manager, id string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for m.Forwarding(id) {
		if time.Now().After(deadline) {
			t.Fatal("forwarder did not end after Stop")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestForwardFluentd: records reach a forward-protocol input with
// dockerd's fields and tag, partial lines carry partial_*; with
// sub-second precision and acks.
func TestForwardFluentd(t *testing.T) {
	for _, sub := range []bool{false, true} {
		t.Run("subsecond="+strconv.FormatBool(sub), func(t *testing.T) {
			m := newManager(t, DefaultConfig())
			srv := logtest.NewFluentd(t, "127.0.0.1:0", sub)
			opts := map[string]string{"fluentd-address": srv.Addr(), "tag": "docker.{{.Name}}", "labels": "app"}
			if sub {
				opts["fluentd-sub-second-precision"] = "true"
				opts["fluentd-request-ack"] = "true"
			}
			c := ctrWith(t, m, container.LogConfig{Type: Fluentd, Config: opts})
			w := shimWriter(t, m, c)
			w.Write(logfile.Stdout, false, []byte("hello fluentd"))
			w.Write(logfile.Stderr, true, []byte("first half, "))
			w.Write(logfile.Stderr, false, []byte("second half"))
			if err := m.Start(c); err != nil {
				t.Fatal(err)
			}
			got := receive(t, srv.Events, 3, 10*time.Second)
			recs := records(t, c)
			for i, e := range got {
				if e.Tag != "docker.web" {
					t.Errorf("event %d tag %q", i, e.Tag)
				}
				want := recs[i].Time.Truncate(time.Second)
				if sub {
					want = recs[i].Time
				}
				if !e.Time.Equal(want) {
					t.Errorf("event %d time %v, want %v", i, e.Time, want)
				}
				if e.Record["container_id"] != c.ID || e.Record["container_name"] != "/web" || e.Record["app"] != "shop" {
					t.Errorf("event %d record %v", i, e.Record)
				}
			}
			if r := got[0].Record; r["log"] != "hello fluentd" || r["source"] != "stdout" || r["partial_message"] != nil {
				t.Errorf("first event %v", r)
			}
			p1, p2 := got[1].Record, got[2].Record
			if p1["log"] != "first half, " || p2["log"] != "second half" || p1["source"] != "stderr" ||
				p1["partial_message"] != "true" || p1["partial_ordinal"] != "1" || p1["partial_last"] != "false" ||
				p2["partial_ordinal"] != "2" || p2["partial_last"] != "true" || p1["partial_id"] != p2["partial_id"] || len(p1["partial_id"].(string)) != 64 {
				t.Errorf("partial events %v %v", p1, p2)
			}
			nothingMore(t, srv.Events, 300*time.Millisecond)
		})
	}
}

// TestForwardResumes: a dead endpoint is retried until it answers, and a
// berthd restart resumes after the last record sent: every record arrives
// once, in order, including those written while berthd was down.
func TestForwardResumes(t *testing.T) {
	addr := freeAddr(t)
	m := newManager(t, DefaultConfig())
	c := ctrWith(t, m, container.LogConfig{Type: Fluentd, Config: map[string]string{"fluentd-address": "tcp://" + addr, "fluentd-retry-wait": "50ms"}})
	w := shimWriter(t, m, c)
	for i := range 5 {
		w.Write(logfile.Stdout, false, []byte("early "+strconv.Itoa(i)))
	}
	if err := m.Start(c); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // a few failed attempts
	srv := logtest.NewFluentd(t, addr, false)
	got := receive(t, srv.Events, 5, 20*time.Second)

	m.Close() // berthd stops
	for i := range 5 {
		w.Write(logfile.Stdout, false, []byte("while down "+strconv.Itoa(i)))
	}
	m2 := newManager(t, DefaultConfig())
	if err := m2.Start(c); err != nil {
		t.Fatal(err)
	}
	got = append(got, receive(t, srv.Events, 5, 20*time.Second)...)
	for i, e := range got {
		want := "early " + strconv.Itoa(i)
		if i >= 5 {
			want = "while down " + strconv.Itoa(i-5)
		}
		if e.Record["log"] != want {
			t.Errorf("event %d: %v, want %q", i, e.Record["log"], want)
		}
	}
	nothingMore(t, srv.Events, 500*time.Millisecond)
	m2.Stop(c.ID)
	waitNotForwarding(t, m2, c.ID)
}

// TestForwardBuffer: with the endpoint down, mode=blocking holds the
// reader at max-buffer-size and loses nothing; non-blocking keeps
// reading, drops what does not fit, and sends the newest when the
// endpoint answers.
func TestForwardBuffer(t *testing.T) {
	for _, mode := range []string{"blocking", "non-blocking"} {
		t.Run(mode, func(t *testing.T) {
			addr := freeAddr(t)
			m := newManager(t, DefaultConfig())
			opts := map[string]string{"fluentd-address": addr, "fluentd-retry-wait": "50ms", "mode": mode}
			if mode == "non-blocking" {
				opts["max-buffer-size"] = "1KiB"
			}
			c := ctrWith(t, m, container.LogConfig{Type: Fluentd, Config: opts})
			f := c
			w := shimWriter(t, m, f)
			const n = 2000
			for i := range n {
				w.Write(logfile.Stdout, false, []byte("record number "+strconv.Itoa(i)))
			}
			if err := m.Start(c); err != nil {
				t.Fatal(err)
			}
			fw := m.forwarders[c.ID]
			time.Sleep(500 * time.Millisecond)
			fw.mu.Lock()
			queued, dropped := fw.queued, fw.dropped
			fw.mu.Unlock()
			if mode == "blocking" && (dropped != 0 || queued > 1_000_000) {
				t.Errorf("blocking: dropped %d, queued %d bytes", dropped, queued)
			}
			if mode == "non-blocking" && (dropped == 0 || queued > 1024) {
				t.Errorf("non-blocking: dropped %d, queued %d bytes (max 1 KiB)", dropped, queued)
			}
			srv := logtest.NewFluentd(t, addr, false)
			var got []string
			deadline := time.After(20 * time.Second)
			wrote := false
			for len(got) == 0 || got[len(got)-1] != "the last one" {
				select {
				case e := <-srv.Events:
					got = append(got, e.Record["log"].(string))
				case <-time.After(300 * time.Millisecond):
					// The endpoint is caught up: a new record goes
					// straight through.
					if !wrote && len(got) > 0 {
						w.Write(logfile.Stdout, false, []byte("the last one"))
						wrote = true
					}
				case <-deadline:
					t.Fatalf("last record not received; got %d", len(got))
				}
			}
			if mode == "blocking" && len(got) != n+1 {
				t.Errorf("blocking: %d records arrived, want all %d", len(got), n+1)
			}
			if mode == "non-blocking" && len(got) > n/2 {
				t.Errorf("non-blocking: %d records arrived with a 1 KiB buffer", len(got))
			}
			for i := 1; i < len(got)-1; i++ {
				a, _ := strconv.Atoi(strings.TrimPrefix(got[i-1], "record number "))
				b, _ := strconv.Atoi(strings.TrimPrefix(got[i], "record number "))
				if b <= a {
					t.Fatalf("out of order: %q after %q", got[i], got[i-1])
				}
			}
			m.Remove(c.ID)
			if _, err := os.Stat(filepath.Join(c.Dir, forwardAt)); err != nil {
				t.Errorf("position not kept: %v", err)
			}
		})
	}
}
