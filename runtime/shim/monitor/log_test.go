package monitor

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/runtime/logfile"
	"github.com/berth-dev/berth/runtime/shim/wire"
)

// TestSplitter: CRI lines as containerd cuts them, json-file and local as
// dockerd's copier does (16 KiB buffer; the unterminated end stays
// partial).
func TestSplitter(t *testing.T) {
	const max = logfile.MaxLine
	long := strings.Repeat("y", max+10)
	tests := []struct {
		name   string
		format string
		writes []string
		want   []string
	}{
		{"one line", "", []string{"hello\n"}, []string{"F hello"}},
		{"line split across writes", "", []string{"hel", "lo\nwor", "ld\n"}, []string{"F hello", "F world"}},
		{"empty line", "", []string{"\n"}, []string{"F "}},
		{"unterminated end is flushed", "", []string{"a\nb"}, []string{"F a", "F b"}},
		{"long line becomes partials", "", []string{long + "\n"}, []string{"P " + long[:max], "F " + long[max:]}},
		{"exactly max is one full line", "", []string{long[:max] + "\n"}, []string{"F " + long[:max]}},
		{"long line fed in small writes", "", chunk(long+"\n", 1000), []string{"P " + long[:max], "F " + long[max:]}},
		{"docker: one line", "json-file", []string{"hello\n"}, []string{"F hello"}},
		{"docker: unterminated end stays partial", "json-file", []string{"a\nb"}, []string{"F a", "P b"}},
		{"docker: long line", "json-file", chunk(long+"\n", 1000), []string{"P " + long[:max], "F " + long[max:]}},
		{"docker: exactly max fills the buffer", "local", []string{long[:max] + "\n"}, []string{"P " + long[:max], "F "}},
		{"docker: one less than max fits", "local", []string{long[:max-1] + "\n"}, []string{"F " + long[:max-1]}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := openLog(path, wire.Log{Format: tt.format})
			if err != nil {
				t.Fatal(err)
			}
			s := newSplitter(w, tt.format, "stdout")
			for _, p := range tt.writes {
				s.write([]byte(p))
			}
			s.flush()
			w.Close()
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			sc := logfile.NewScanner(f, logfile.Format(tt.format))
			var got []string
			for {
				r, err := sc.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				tag := "F "
				if r.Partial {
					tag = "P "
				}
				got = append(got, tag+string(r.Line))
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("got %.200q, want %.200q", got, tt.want)
			}
		})
	}
}

func chunk(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func TestNoLogPathDiscards(t *testing.T) {
	w, err := openLog("", wire.Log{Format: "json-file"})
	if err != nil || w != nil {
		t.Fatalf("openLog without a path = %v, %v", w, err)
	}
	s := newSplitter(nil, "json-file", "stdout")
	s.write([]byte("dropped\n"))
	s.flush()
}
