package monitor

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestLineSplitter(t *testing.T) {
	long := strings.Repeat("y", maxLogLine+10)
	tests := []struct {
		name   string
		writes []string
		want   []string
	}{
		{"one line", []string{"hello\n"}, []string{"F hello"}},
		{"line split across writes", []string{"hel", "lo\nwor", "ld\n"}, []string{"F hello", "F world"}},
		{"empty line", []string{"\n"}, []string{"F "}},
		{"unterminated end is flushed", []string{"a\nb"}, []string{"F a", "F b"}},
		{"long line becomes partials", []string{long + "\n"}, []string{"P " + long[:maxLogLine], "F " + long[maxLogLine:]}},
		{"exactly max is one full line", []string{long[:maxLogLine] + "\n"}, []string{"F " + long[:maxLogLine]}},
		{"long line fed in small writes", chunk(long+"\n", 1000), []string{"P " + long[:maxLogLine], "F " + long[maxLogLine:]}},
	}
	re := regexp.MustCompile(`^(\S+) stdout ([FP]) (.*)$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			l, err := openLog(path)
			if err != nil {
				t.Fatal(err)
			}
			s := &lineSplitter{log: l, stream: "stdout"}
			for _, w := range tt.writes {
				s.write([]byte(w))
			}
			s.flush()
			l.close()
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
				m := re.FindStringSubmatch(line)
				if m == nil {
					t.Fatalf("line %.60q not in CRI format", line)
				}
				if _, err := time.Parse(time.RFC3339Nano, m[1]); err != nil {
					t.Fatal(err)
				}
				got = append(got, m[2]+" "+m[3])
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

func TestReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	l, err := openLog(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	l.write("stdout", false, []byte("before"))
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.reopen(); err != nil {
		t.Fatal(err)
	}
	l.write("stderr", false, []byte("after"))
	old, _ := os.ReadFile(path + ".1")
	cur, _ := os.ReadFile(path)
	if !strings.HasSuffix(string(old), " stdout F before\n") || !strings.HasSuffix(string(cur), " stderr F after\n") || strings.Contains(string(cur), "before") {
		t.Fatalf("rotated %q, current %q", old, cur)
	}
}
