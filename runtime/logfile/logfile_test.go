package logfile

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 120000000, time.UTC)

// TestJSONBytesAsDockerd: the bytes dockerd's jsonlog.JSONLogs writes for
// the same message (its escaping: \t and <>& as \u00XX, invalid UTF-8 as
// \ufffd, U+2028 escaped; trailing zeros of the time trimmed).
func TestJSONBytesAsDockerd(t *testing.T) {
	tests := []struct {
		line    string
		partial bool
		attrs   string
		want    string
	}{
		{"hello", false, "", `{"log":"hello\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}` + "\n"},
		{"part", true, "", `{"log":"part","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}` + "\n"},
		{"a\tb<c>&\"d\\\x01\r", false, "", `{"log":"a\u0009b\u003cc\u003e\u0026\"d\\\u0001\r\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}` + "\n"},
		{"é\u2028x\xffy", false, "", `{"log":"é\u2028x\ufffdy\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}` + "\n"},
		{"x", false, `{"tag":"web"}`, `{"log":"x\n","stream":"stdout","attrs":{"tag":"web"},"time":"2024-05-06T07:08:09.12Z"}` + "\n"},
	}
	for _, tt := range tests {
		got := string(appendJSON(nil, Stdout, t0, tt.partial, []byte(tt.line), []byte(tt.attrs)))
		if got != tt.want {
			t.Errorf("line %q:\n got %s\nwant %s", tt.line, got, tt.want)
		}
	}
}

func TestParseJSONAgreesWithEncodingJSON(t *testing.T) {
	for _, line := range []string{
		`{"log":"hello\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}`,
		`{"log":"a\u0009b\u003c\/\"\\","stream":"stderr","time":"2024-05-06T07:08:09Z"}`,
		`{"log":"x\n","stream":"stdout","attrs":{"tag":"web"},"time":"2024-05-06T07:08:09.12Z"}`,
		`{"time":"2024-05-06T07:08:09.12Z","log":"reordered\n","stream":"stdout"}`,
		`{"log":"\ud83d\ude00 surrogates\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}`,
		`{"log":"bad utf8 ` + "\xff" + `\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}`,
	} {
		got, err := ParseJSON([]byte(line))
		if err != nil {
			t.Fatalf("%s: %v", line, err)
		}
		want, err := slowJSON([]byte(line))
		if err != nil {
			t.Fatal(err)
		}
		if !sameRecord(got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", line, got, want)
		}
	}
	for _, bad := range []string{``, `{`, `{"log":"x","stream":"stdout","time":"yesterday"}`, `[1]`} {
		if _, err := ParseJSON([]byte(bad)); !errors.Is(err, ErrCorrupt) {
			t.Errorf("ParseJSON(%q) = %v, want ErrCorrupt", bad, err)
		}
	}
}

// slowJSON decodes as dockerd's reader does.
func slowJSON(line []byte) (Record, error) {
	var l jsonLog
	if err := json.Unmarshal(line, &l); err != nil {
		return Record{}, err
	}
	r := Record{Stream: l.Stream, Time: l.Time, Attrs: l.Attrs, Line: []byte(l.Log)}
	r.Line, r.Partial = trimNewline(r.Line)
	return r, nil
}

func sameRecord(a, b Record) bool {
	return a.Stream == b.Stream && a.Time.Equal(b.Time) && a.Partial == b.Partial && bytes.Equal(a.Line, b.Line) && reflect.DeepEqual(len(a.Attrs) == 0, len(b.Attrs) == 0) && (len(a.Attrs) == 0 || reflect.DeepEqual(a.Attrs, b.Attrs))
}

// FuzzParseJSON: the json-file line parser never panics, its fast path
// agrees with encoding/json (dockerd's reader) on every line both accept,
// and what the writer encodes parses back to the same record.
func FuzzParseJSON(f *testing.F) {
	f.Add([]byte(`{"log":"hello\n","stream":"stdout","time":"2024-05-06T07:08:09.12Z"}`), []byte("hello"))
	f.Add([]byte(`{"log":"\u00e9\ud83d\ude00\n","stream":"stderr","time":"2024-05-06T07:08:09Z"}`), []byte("a\tb<>&\x00\xff\u2028"))
	f.Add([]byte(`{"log":"x","stream":"stdout","attrs":{"a":"b"},"time":"2024-05-06T07:08:09.000000001+02:00"}`), []byte(""))
	f.Fuzz(func(t *testing.T, line, content []byte) {
		got, err := ParseJSON(line)
		want, werr := slowJSON(line)
		if err == nil && werr != nil {
			t.Fatalf("fast path accepted what encoding/json rejects: %q: %v", line, werr)
		}
		if err == nil && !sameRecord(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", line, got, want)
		}
		enc := appendJSON(nil, Stderr, t0, false, content, nil)
		rec, err := ParseJSON(bytes.TrimSuffix(enc, []byte{'\n'}))
		if err != nil {
			t.Fatalf("own line %q does not parse: %v", enc, err)
		}
		if want := validUTF8(content); !bytes.Equal(rec.Line, want) || rec.Partial || rec.Stream != Stderr || !rec.Time.Equal(t0) {
			t.Fatalf("round trip of %q gave %+v", content, rec)
		}
	})
}

func TestCRIAndLocalRoundTrip(t *testing.T) {
	for _, f := range []Format{CRI, JSON, Local} {
		t.Run(string(f)+"x", func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Open(path, Options{Format: f})
			if err != nil {
				t.Fatal(err)
			}
			in := []struct {
				stream  string
				partial bool
				line    string
			}{{Stdout, false, "one"}, {Stderr, false, ""}, {Stdout, true, strings.Repeat("z", MaxLine)}, {Stdout, false, "tail\x00 with \"bytes\" \xfe"}}
			for _, r := range in {
				if err := w.Write(r.stream, r.partial, []byte(r.line)); err != nil {
					t.Fatal(err)
				}
			}
			w.Close()
			recs := readAll(t, path, f)
			if len(recs) != len(in) {
				t.Fatalf("read %d records, wrote %d", len(recs), len(in))
			}
			for i, r := range recs {
				want := in[i].line
				if f == JSON {
					want = string(validUTF8([]byte(want)))
				}
				if r.Stream != in[i].stream || r.Partial != in[i].partial || string(r.Line) != want {
					t.Errorf("record %d = %s %v %.40q, want %s %v %.40q", i, r.Stream, r.Partial, r.Line, in[i].stream, in[i].partial, want)
				}
				if i > 0 && !r.Time.After(recs[i-1].Time) {
					t.Errorf("record %d time %v not after %v", i, r.Time, recs[i-1].Time)
				}
			}
		})
	}
}

type rec struct {
	Record
	line string
}

func readAll(t testing.TB, path string, f Format) []rec {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	return scanAll(t, fh, f)
}

func scanAll(t testing.TB, r io.Reader, f Format) []rec {
	t.Helper()
	s := NewScanner(r, f)
	var out []rec
	for {
		r, err := s.Next()
		if errors.Is(err, io.EOF) {
			if s.Buffered() {
				t.Fatal("incomplete record at the end")
			}
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		r.Line = append([]byte(nil), r.Line...)
		out = append(out, rec{Record: r, line: string(r.Line)})
	}
}

// readChain reads every file of the log, oldest first.
func readChain(t testing.TB, path string, f Format) []rec {
	t.Helper()
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []rec
	for _, fi := range files {
		fh, err := os.Open(fi.Path)
		if err != nil {
			t.Fatal(err)
		}
		var r io.Reader = fh
		if fi.Compressed {
			zr, err := gzip.NewReader(fh)
			if err != nil {
				t.Fatalf("%s: %v", fi.Path, err)
			}
			r = zr
		}
		out = append(out, scanAll(t, r, f)...)
		fh.Close()
	}
	return out
}

// TestRotationKeepsAContiguousTail: many rotations, faster than the
// compressor, in every format: the files kept hold the newest records
// without gap, duplicate or reordering, and the oldest are gone.
func TestRotationKeepsAContiguousTail(t *testing.T) {
	for _, f := range []Format{JSON, Local, CRI} {
		for _, tc := range []struct {
			compress bool
			batch    int
		}{{false, 1}, {true, 1}, {false, 37}, {true, 37}} {
			compress := tc.compress
			t.Run(fmt.Sprintf("%s/compress=%v/batch=%d", f, compress, tc.batch), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "c.log")
				w, err := Open(path, Options{Format: f, MaxSize: 4096, MaxFiles: 4, Compress: compress})
				if err != nil {
					t.Fatal(err)
				}
				const n = 5000
				var batch []Line
				for i := range n {
					batch = append(batch, Line{Line: []byte("line " + strconv.Itoa(i))})
					if len(batch) == tc.batch || i == n-1 {
						if err := w.WriteLines(Stdout, batch); err != nil {
							t.Fatal(err)
						}
						batch = nil
					}
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				files, _ := Files(path)
				if len(files) != 4 {
					t.Fatalf("files %+v, want 4", files)
				}
				if compress && tc.batch == 1 && f == JSON {
					// Close waited for the one in progress; a next shim
					// compresses the rest (after its sweep delay).
					w2, err := Open(path, Options{Format: f, MaxSize: 4096, MaxFiles: 4, Compress: true})
					if err != nil {
						t.Fatal(err)
					}
					waitCompressed(t, path)
					w2.Close()
				}
				recs := readChain(t, path, f)
				last, _ := strconv.Atoi(strings.TrimPrefix(recs[len(recs)-1].line, "line "))
				first, _ := strconv.Atoi(strings.TrimPrefix(recs[0].line, "line "))
				if last != n-1 || first == 0 {
					t.Fatalf("kept lines %d..%d, want a tail ending at %d", first, last, n-1)
				}
				for i, r := range recs {
					if r.line != "line "+strconv.Itoa(first+i) {
						t.Fatalf("record %d is %q, want line %d", i, r.line, first+i)
					}
					if i > 0 && !r.Time.After(recs[i-1].Time) {
						t.Fatalf("record %d not after the one before", i)
					}
				}
				var size int64
				files, _ = Files(path)
				for _, fi := range files {
					st, err := os.Stat(fi.Path)
					if err != nil {
						t.Fatal(err)
					}
					size += st.Size()
				}
				if size > 4*(4096+100) {
					t.Errorf("%d bytes kept, max-size 4096 x 4 files", size)
				}
			})
		}
	}
}

func waitCompressed(t *testing.T, path string) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for {
		files, err := Files(path)
		if err != nil {
			t.Fatal(err)
		}
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
			t.Fatalf("rotated files still plain: %+v", files)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCompressedFileCarriesLastTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, Options{Format: JSON, MaxSize: 100, MaxFiles: 2, Compress: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		w.Write(Stdout, false, []byte(strings.Repeat("a", 60)+strconv.Itoa(i)))
	}
	waitCompressed(t, path)
	w.Close()
	fh, err := os.Open(path + ".1.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	zr, err := gzip.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	last, ok := GzipLastTime(zr.Header)
	recs := scanAll(t, zr, JSON)
	if !ok || len(recs) == 0 || !last.Equal(recs[len(recs)-1].Time) {
		t.Fatalf("gzip header last time %v (%v), last record %+v", last, ok, recs)
	}
}

func TestMaxFileOneTruncates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, Options{Format: JSON, MaxSize: 200, MaxFiles: 1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		w.Write(Stdout, false, []byte("line "+strconv.Itoa(i)))
	}
	w.Close()
	files, _ := Files(path)
	if len(files) != 1 {
		t.Fatalf("files %+v, want only the current one", files)
	}
	recs := readAll(t, path, JSON)
	if len(recs) == 0 || recs[len(recs)-1].line != "line 49" || len(recs) > 4 {
		t.Fatalf("kept %d records ending %+v", len(recs), recs[len(recs)-1])
	}
}

// TestNonBlockingDropsInsteadOfWaiting: while the file is held (a disk
// that does not answer), writes return at once; what fits in the buffer
// lands once the disk answers, the rest is dropped.
func TestNonBlockingDropsInsteadOfWaiting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	w, err := Open(path, Options{Format: Local, NonBlocking: true, MaxBuffer: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	w.mu.Lock() // the disk stalls
	start := time.Now()
	var dropped int
	line := bytes.Repeat([]byte("x"), 100)
	for range 1000 {
		if err := w.Write(Stdout, false, line); errors.Is(err, ErrDropped) {
			dropped++
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("1000 writes took %v with the disk stalled", d)
	}
	w.mu.Unlock()
	w.Flush(5 * time.Second)
	w.Close()
	recs := readAll(t, path, Local)
	if dropped == 0 || len(recs) == 0 || len(recs)+dropped != 1000 || uint64(dropped) != w.Dropped() {
		t.Fatalf("dropped %d (Dropped %d), written %d", dropped, w.Dropped(), len(recs))
	}
	if len(recs) > 200 {
		t.Errorf("%d records of 100 bytes buffered with max-buffer-size 10000", len(recs))
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	w, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write(Stdout, false, []byte("before"))
	if err := os.Rename(path, path+".moved"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Write(Stderr, false, []byte("after"))
	old, cur := readAll(t, path+".moved", CRI), readAll(t, path, CRI)
	if len(old) != 1 || old[0].line != "before" || len(cur) != 1 || cur[0].line != "after" || cur[0].Stream != Stderr {
		t.Fatalf("moved %+v, current %+v", old, cur)
	}
}

func TestTailOffset(t *testing.T) {
	for _, f := range []Format{JSON, Local, CRI} {
		t.Run(string(f)+"x", func(t *testing.T) {
			var b []byte
			for i := range 10 {
				b = appendRecord(b, f, Stdout, t0.Add(time.Duration(i)), false, []byte("l"+strconv.Itoa(i)), nil)
			}
			full := len(b)
			// A record being written: not counted.
			half := appendRecord(nil, f, Stdout, t0, false, []byte("incomplete"), nil)
			b = append(b, half[:len(half)-3]...)
			for _, tt := range []struct{ n, wantFound, wantFirst int }{{1, 1, 9}, {3, 3, 7}, {10, 10, 0}, {50, 10, 0}} {
				off, found, err := TailOffset(bytes.NewReader(b), int64(len(b)), f, tt.n)
				if err != nil {
					t.Fatal(err)
				}
				recs := scanAll(t, bytes.NewReader(b[off:full]), f)
				if found != tt.wantFound || len(recs) != tt.wantFound || recs[0].line != "l"+strconv.Itoa(tt.wantFirst) {
					t.Errorf("tail %d: found %d, records from %q", tt.n, found, recs[0].line)
				}
			}
		})
	}
}

// TestScannerFollowsAGrowingFile: a record written in two pieces is
// returned once complete, and corrupt local bytes are an error.
func TestScannerFollowsAGrowingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	out, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	in, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	s := NewScanner(in, Local)
	r := appendLocal(nil, Stdout, t0, false, []byte("hello"))
	out.Write(r[:7])
	if _, err := s.Next(); !errors.Is(err, io.EOF) || !s.Buffered() {
		t.Fatalf("half a record: %v", err)
	}
	out.Write(r[7:])
	got, err := s.Next()
	if err != nil || string(got.Line) != "hello" || s.Offset() != int64(len(r)) {
		t.Fatalf("completed record: %+v %v offset %d", got, err, s.Offset())
	}
	out.Write([]byte{0xff, 0xff, 0xff, 0xff, 0})
	if _, err := s.Next(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("garbage: %v, want ErrCorrupt", err)
	}
}

func TestFilesOrder(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x-json.log")
	for _, n := range []string{"x-json.log", "x-json.log.1", "x-json.log.2.gz", "x-json.log.2", "x-json.log.10.gz", "x-json.log.03", "x-json.log.gz", ".x-json.log.gz-1", "other.1"} {
		os.WriteFile(filepath.Join(dir, n), nil, 0o644)
	}
	files, err := Files(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, filepath.Base(f.Path))
	}
	want := "x-json.log.10.gz x-json.log.2 x-json.log.1 x-json.log"
	if strings.Join(got, " ") != want {
		t.Fatalf("files %q, want %q", got, want)
	}
}

// validUTF8 replaces every invalid byte with U+FFFD, as dockerd's writer.
func validUTF8(b []byte) []byte {
	var out []byte
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			out = append(out, "\ufffd"...)
		} else {
			out = append(out, b[:size]...)
		}
		b = b[size:]
	}
	return out
}

// BenchmarkWrite is the shim's log writer alone: 80-byte lines, rotated
// at 10 MB into 5 files (compressed), per format and mode, one line per
// call or 64 (one read of the pipe).
func BenchmarkWrite(b *testing.B) {
	line := bytes.Repeat([]byte("0123456789"), 8)
	for _, f := range []Format{CRI, JSON, Local} {
		for _, nb := range []bool{false, true} {
			for _, batch := range []int{1, 64} {
				name := string(f)
				if f == CRI {
					name = "cri"
				}
				b.Run(fmt.Sprintf("%s/nonblocking=%v/batch=%d", name, nb, batch), func(b *testing.B) {
					w, err := Open(filepath.Join(b.TempDir(), "log"), Options{Format: f, MaxSize: 10 << 20, MaxFiles: 5, Compress: true, NonBlocking: nb, MaxBuffer: 64 << 20})
					if err != nil {
						b.Fatal(err)
					}
					lines := make([]Line, batch)
					for i := range lines {
						lines[i].Line = line
					}
					b.SetBytes(int64(len(line) * batch))
					for b.Loop() {
						w.WriteLines(Stdout, lines)
					}
					w.Close()
					if d := w.Dropped(); d > 0 {
						b.ReportMetric(float64(d), "dropped")
					}
				})
			}
		}
	}
}
