package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime/logfile"
)

// ctrWith resolves lc for a test container in its own directory.
func ctrWith(t *testing.T, m *Manager, lc container.LogConfig) Container {
	t.Helper()
	lc, err := m.Resolve(lc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	return Container{ID: strings.Repeat("c0", 32), Name: "/web", Dir: dir, ImageID: "sha256:" + strings.Repeat("e", 64), ImageName: "busybox",
		Labels: map[string]string{"app": "shop"}, Env: []string{"REGION=eu"}, LogConfig: lc, Created: time.Unix(1700000000, 0)}
}

// shimWriter opens the container's log file as its shim would.
func shimWriter(t *testing.T, m *Manager, c Container) *logfile.Writer {
	t.Helper()
	path, rc, err := m.RuntimeLog(c)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := logfile.Open(path, logfile.Options{Format: logfile.Format(rc.Format), MaxSize: rc.MaxSize, MaxFiles: rc.MaxFiles, Compress: rc.Compress, Attrs: rc.Attrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// demux splits a logs response into stdout, stderr and system errors.
func demux(t *testing.T, b []byte) (string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &errOut, bytes.NewReader(b)); err != nil {
		t.Fatalf("stdcopy: %v (%q)", err, b)
	}
	return out.String(), errOut.String()
}

func read(t *testing.T, m *Manager, c Container, o ReadOptions) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := m.Read(t.Context(), c, o, &b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadAsDockerLogs(t *testing.T) {
	m := newManager(t, DefaultConfig())
	for _, driver := range []string{JSONFile, Local} {
		t.Run(driver, func(t *testing.T) {
			c := ctrWith(t, m, container.LogConfig{Type: driver})
			w := shimWriter(t, m, c)
			w.Write(logfile.Stdout, false, []byte("one"))
			w.Write(logfile.Stderr, false, []byte("oops"))
			w.Write(logfile.Stdout, true, []byte("par"))
			w.Write(logfile.Stdout, false, []byte("tial"))
			w.Write(logfile.Stdout, false, []byte("three"))
			w.Write(logfile.Stdout, true, []byte("no newline at the end"))
			all := ReadOptions{Stdout: true, Stderr: true, Tail: -1}

			out, errOut := demux(t, read(t, m, c, all))
			if out != "one\npartial\nthree\nno newline at the end" || errOut != "oops\n" {
				t.Errorf("all: stdout %q stderr %q", out, errOut)
			}
			o := all
			o.Stderr = false
			if out, errOut := demux(t, read(t, m, c, o)); errOut != "" || !strings.HasPrefix(out, "one\n") {
				t.Errorf("stdout only: %q %q", out, errOut)
			}
			o = all
			o.Tail = 2
			if out, _ := demux(t, read(t, m, c, o)); out != "three\nno newline at the end" {
				t.Errorf("tail 2: %q", out)
			}
			o.Tail = 0
			if b := read(t, m, c, o); len(b) != 0 {
				t.Errorf("tail 0: %q", b)
			}
			o = all
			o.Timestamps = true
			out, _ = demux(t, read(t, m, c, o))
			ts := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z one$`)
			if first, _, _ := strings.Cut(out, "\n"); !ts.MatchString(first) {
				t.Errorf("timestamps: %q", first)
			}

			// since and until bound by the records' own times.
			recs := records(t, c)
			o = all
			o.Since, o.Until = recs[1].Time, recs[3].Time
			if out, errOut := demux(t, read(t, m, c, o)); out != "partial\n" || errOut != "oops\n" {
				t.Errorf("since..until: %q %q", out, errOut)
			}
			o = all
			o.Tail, o.Since = 3, recs[4].Time
			if out, _ := demux(t, read(t, m, c, o)); out != "three\nno newline at the end" {
				t.Errorf("tail 3 since the 5th record: %q", out)
			}

			c.TTY = true
			if b := read(t, m, c, all); string(b) != "one\noops\npartial\nthree\nno newline at the end" {
				t.Errorf("tty: %q", b)
			}
		})
	}
}

// records reads the container's log file directly.
func records(t *testing.T, c Container) []logfile.Record {
	t.Helper()
	p, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	fl := &follower{path: p.path, format: logfile.Format(p.file.Format)}
	defer fl.close()
	var out []logfile.Record
	for {
		r, err := fl.next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		r.Line = append([]byte(nil), r.Line...)
		out = append(out, r)
	}
}

func TestReadDetails(t *testing.T) {
	m := newManager(t, DefaultConfig())
	c := ctrWith(t, m, container.LogConfig{Type: JSONFile, Config: map[string]string{"labels": "app", "env": "REGION", "tag": "x y"}})
	shimWriter(t, m, c).Write(logfile.Stdout, false, []byte("hi"))
	out, _ := demux(t, read(t, m, c, ReadOptions{Stdout: true, Tail: -1, Details: true}))
	if out != "REGION=eu,app=shop,tag=x+y hi\n" {
		t.Errorf("details: %q", out)
	}
}

func TestReadRefusals(t *testing.T) {
	m := newManager(t, DefaultConfig())
	for _, lc := range []container.LogConfig{
		{Type: None},
		{Type: GELF, Config: map[string]string{"gelf-address": "udp://127.0.0.1:9", "cache-disabled": "true"}},
	} {
		c := ctrWith(t, m, lc)
		err := m.Read(t.Context(), c, ReadOptions{Stdout: true}, io.Discard)
		if !errdefs.IsNotImplemented(err) || err.Error() != "configured logging driver does not support reading" || !errors.Is(err, ErrReadNotSupported) {
			t.Errorf("%s: %v", lc.Type, err)
		}
	}
	c := ctrWith(t, m, container.LogConfig{})
	if err := m.Read(t.Context(), c, ReadOptions{}, io.Discard); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "you must choose at least one stream") {
		t.Errorf("no stream: %v", err)
	}
	// A container that never wrote has an empty log.
	if b := read(t, m, c, ReadOptions{Stdout: true, Tail: -1}); len(b) != 0 {
		t.Errorf("empty log: %q", b)
	}
	// The cache of a remote driver is read as dockerd's dual logging does.
	c = ctrWith(t, m, container.LogConfig{Type: Fluentd})
	shimWriter(t, m, c).Write(logfile.Stdout, false, []byte("cached"))
	if out, _ := demux(t, read(t, m, c, ReadOptions{Stdout: true, Tail: -1})); out != "cached\n" {
		t.Errorf("fluentd's cache: %q", out)
	}
}

func TestParseQuery(t *testing.T) {
	for s, want := range map[string]int{"all": -1, "": -1, "x": -1, "-3": -1, "0": 0, "25": 25} {
		if got := ParseTail(s); got != want {
			t.Errorf("ParseTail(%q) = %d, want %d", s, got, want)
		}
	}
	for s, want := range map[string]time.Time{"": {}, "1700000000": time.Unix(1700000000, 0), "1700000000.5": time.Unix(1700000000, 500000000), "1700000000.000000001": time.Unix(1700000000, 1)} {
		got, err := ParseTime(s)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseTime(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"yesterday", "1.x", "1.1234567891"} {
		if _, err := ParseTime(s); !errdefs.IsInvalidArgument(err) {
			t.Errorf("ParseTime(%q) = %v, want invalid argument", s, err)
		}
	}
}

// TestTailAcrossRotatedFiles: tail counts back through rotated, gzipped
// files; all reads every kept file in order.
func TestTailAcrossRotatedFiles(t *testing.T) {
	m := newManager(t, DefaultConfig())
	for _, driver := range []string{JSONFile, Local} {
		t.Run(driver, func(t *testing.T) {
			c := ctrWith(t, m, container.LogConfig{Type: driver, Config: map[string]string{"max-size": "2k", "max-file": "50", "compress": "true"}})
			w := shimWriter(t, m, c)
			for i := range 1000 {
				w.Write(logfile.Stdout, false, []byte("line "+strconv.Itoa(i)))
			}
			waitPlainGone(t, c)
			files, _ := logfile.Files(filepath.Join(c.Dir, pathIn(t, c)))
			if len(files) < 10 {
				t.Fatalf("only %d files", len(files))
			}
			for _, n := range []int{1, 7, 150, 999, 1000, 5000} {
				out, _ := demux(t, read(t, m, c, ReadOptions{Stdout: true, Tail: n}))
				want := lines(max(0, 1000-n), 1000)
				if out != want {
					t.Errorf("tail %d: got %d bytes %.60q..., want %d bytes", n, len(out), out, len(want))
				}
			}
			if out, _ := demux(t, read(t, m, c, ReadOptions{Stdout: true, Tail: -1})); out != lines(0, 1000) {
				t.Errorf("all: %d bytes", len(out))
			}
		})
	}
}

func pathIn(t *testing.T, c Container) string {
	p, err := parse(c)
	if err != nil {
		t.Fatal(err)
	}
	rel, _ := filepath.Rel(c.Dir, p.path)
	return rel
}

func waitPlainGone(t *testing.T, c Container) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for {
		files, _ := logfile.Files(filepath.Join(c.Dir, pathIn(t, c)))
		plain := 0
		for _, f := range files {
			if f.Index > 0 && !f.Compressed {
				plain++
			}
		}
		if plain == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatal("rotated files not compressed")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func lines(from, to int) string {
	var b strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&b, "line %d\n", i)
	}
	return b.String()
}

// syncBuffer is written by Read while the test looks.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) Bytes() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.b.Bytes()...)
}

// TestFollowAcrossRotation: a follower sees every line once and in order
// while the file is rotated (and compressed) under it many times, and it
// ends once the container stopped and the rest is read.
func TestFollowAcrossRotation(t *testing.T) {
	m := newManager(t, DefaultConfig())
	for _, driver := range []string{JSONFile, Local} {
		t.Run(driver, func(t *testing.T) {
			c := ctrWith(t, m, container.LogConfig{Type: driver, Config: map[string]string{"max-size": "1k", "max-file": "1000", "compress": "true"}})
			w := shimWriter(t, m, c)
			w.Write(logfile.Stdout, false, []byte("before"))
			stopped := make(chan struct{})
			var out syncBuffer
			done := make(chan error, 1)
			go func() {
				done <- m.Read(t.Context(), c, ReadOptions{Stdout: true, Stderr: true, Tail: 0, Follow: true, Stopped: stopped}, &out)
			}()
			// The follower is at the end before the writes start.
			time.Sleep(3 * pollInterval)
			const n = 3000
			for i := range n {
				w.Write(logfile.Stdout, false, []byte("line "+strconv.Itoa(i)))
				if i%300 == 0 {
					time.Sleep(pollInterval / 2)
				}
			}
			close(stopped)
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(20 * time.Second):
				t.Fatal("follow did not end after the container stopped")
			}
			got, _ := demux(t, out.Bytes())
			if got != lines(0, n) {
				seen := map[string]int{}
				for _, l := range strings.Split(got, "\n") {
					seen[l]++
				}
				var missing, dup []string
				for i := range n {
					k := "line " + strconv.Itoa(i)
					if seen[k] == 0 {
						missing = append(missing, k)
					}
					if seen[k] > 1 {
						dup = append(dup, k)
					}
				}
				t.Logf("missing %v dup %v", missing, dup)
				t.Fatalf("followed %d bytes, want %d (lines 0..%d once each); starts %.80q", len(got), len(lines(0, n)), n-1, got)
			}
		})
	}
}

// TestFollowEndsWithContext: a follow with no stop ends with its context,
// flushing what it sent.
func TestFollowEndsWithContext(t *testing.T) {
	m := newManager(t, DefaultConfig())
	c := ctrWith(t, m, container.LogConfig{})
	w := shimWriter(t, m, c)
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- m.Read(ctx, c, ReadOptions{Stdout: true, Tail: -1, Follow: true}, &out) }()
	w.Write(logfile.Stdout, false, []byte("live"))
	deadline := time.Now().Add(5 * time.Second)
	for !bytes.Contains(out.Bytes(), []byte("live\n")) {
		if time.Now().After(deadline) {
			t.Fatalf("followed output %q", out.Bytes())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestMessages: the callback form gives the same records, lines with
// their newline (none for a partial one), and stops at fn's error.
func TestMessages(t *testing.T) {
	m := newManager(t, DefaultConfig())
	c := ctrWith(t, m, container.LogConfig{Type: JSONFile, Config: map[string]string{"labels": "app"}})
	w := shimWriter(t, m, c)
	w.Write(logfile.Stdout, true, []byte("a"))
	w.Write(logfile.Stdout, false, []byte("b"))
	w.Write(logfile.Stderr, false, []byte("c"))
	var got []string
	err := m.Messages(t.Context(), c, ReadOptions{Stdout: true, Stderr: true, Tail: -1}, func(msg Message) error {
		if msg.Err != nil || msg.Time.IsZero() || msg.Attrs["app"] != "shop" {
			t.Errorf("message %+v", msg)
		}
		got = append(got, msg.Stream+":"+string(msg.Line))
		return nil
	})
	if err != nil || strings.Join(got, "|") != "stdout:a|stdout:b\n|stderr:c\n" {
		t.Fatalf("messages %q, %v", got, err)
	}
	stop := errors.New("enough")
	n := 0
	err = m.Messages(t.Context(), c, ReadOptions{Stdout: true, Stderr: true, Tail: -1}, func(Message) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Fatalf("fn's error: %v after %d", err, n)
	}
}
