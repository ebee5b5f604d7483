package shim_test

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/logfile"
	"github.com/berth-dev/berth/runtime/shim"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// chainRecords reads every file of a log chain, oldest first, as a reader
// of docker logs would.
func chainRecords(t *testing.T, path string, f logfile.Format) []logfile.Record {
	t.Helper()
	files, err := logfile.Files(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []logfile.Record
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
			if _, ok := logfile.GzipLastTime(zr.Header); !ok {
				t.Errorf("%s: no last time in the gzip header", fi.Path)
			}
			r = zr
		}
		s := logfile.NewScanner(r, f)
		for {
			rec, err := s.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", fi.Path, err)
			}
			rec.Line = append([]byte(nil), rec.Line...)
			out = append(out, rec)
		}
		fh.Close()
	}
	return out
}

func waitRotatedCompressed(t *testing.T, path string) []logfile.File {
	t.Helper()
	var files []logfile.File
	waitFor(t, 10*time.Second, func() bool {
		var err error
		if files, err = logfile.Files(path); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if f.Index > 0 && !f.Compressed {
				return false
			}
		}
		return true
	})
	return files
}

// TestShimRotatesLog: the shim writes docker's formats, rotates them at
// max-size keeping max-file files, gzips the rotated ones, and what is
// kept is the newest output without gap; a 20000-byte line is cut at
// 16 KiB and the last unterminated output stays partial, as dockerd does.
func TestShimRotatesLog(t *testing.T) {
	needRoot(t)
	for _, format := range []string{"json-file", "local"} {
		t.Run(format, func(t *testing.T) {
			script := `i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done; echo oops >&2; ` +
				`printf '%20000s\n' ''; printf tail`
			c := start(t, "rot-"+format, []string{"sh", "-c", script}, shim.StartOptions{
				Log: wire.Log{Format: format, MaxSize: 64 * 1024, MaxFiles: 4, Compress: true},
			})
			if e := wait(t, c); e.Code != 0 {
				t.Fatalf("exit %+v", e)
			}
			files := waitRotatedCompressed(t, c.log)
			if len(files) != 4 {
				t.Fatalf("files %+v, want the current one and 3 rotated", files)
			}
			recs := chainRecords(t, c.log, logfile.Format(format))
			var lines []string
			var stderr, partial []string
			for i, r := range recs {
				if i > 0 && !r.Time.After(recs[i-1].Time) {
					t.Fatalf("record %d's time %v is not after %v", i, r.Time, recs[i-1].Time)
				}
				switch {
				case r.Stream == logfile.Stderr:
					stderr = append(stderr, string(r.Line))
				case strings.HasPrefix(string(r.Line), "line "):
					lines = append(lines, string(r.Line))
				default:
					tag := "F"
					if r.Partial {
						tag = "P"
					}
					partial = append(partial, fmt.Sprintf("%s %d", tag, len(r.Line)))
				}
			}
			first, _ := strconv.Atoi(strings.TrimPrefix(lines[0], "line "))
			if first == 0 || lines[len(lines)-1] != "line 19999" {
				t.Fatalf("kept %s .. %s: want a tail ending at line 19999, rotated", lines[0], lines[len(lines)-1])
			}
			for i, l := range lines {
				if l != "line "+strconv.Itoa(first+i) {
					t.Fatalf("line %d is %q, want line %d: a gap", i, l, first+i)
				}
			}
			if strings.Join(stderr, "|") != "oops" {
				t.Errorf("stderr records %q", stderr)
			}
			if got := strings.Join(partial, ","); got != "P 16384,F 3616,P 4" {
				t.Errorf("long line and unterminated end: %s, want P 16384,F 3616,P 4", got)
			}
		})
	}
}

// TestShimNonBlockingLogKeepsAllWhenTheDiskKeepsUp: mode=non-blocking
// writes through its buffer; with a disk that keeps up nothing is lost,
// and the exit is recorded only after the buffer reached the file.
func TestShimNonBlockingLogKeepsAllWhenTheDiskKeepsUp(t *testing.T) {
	needRoot(t)
	c := start(t, "nonblock", []string{"sh", "-c", `i=0; while [ $i -lt 3000 ]; do echo "line $i"; i=$((i+1)); done`}, shim.StartOptions{
		Log: wire.Log{Format: "local", NonBlocking: true, MaxBuffer: 4 << 20},
	})
	wait(t, c)
	recs := chainRecords(t, c.log, logfile.Local)
	if len(recs) != 3000 || string(recs[2999].Line) != "line 2999" {
		t.Fatalf("%d records, last %q", len(recs), recs[len(recs)-1].Line)
	}
}
