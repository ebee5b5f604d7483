package engine

import (
	"slices"
	"testing"
)

func TestParsePS(t *testing.T) {
	out := []byte("UID          PID    PPID  C STIME TTY          TIME CMD\n" +
		"root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n" +
		"root         200       1  0 10:01 ?        00:00:00 sh -c sleep 1000 & wait\n" +
		"root         201     200  0 10:01 ?        00:00:00 sleep 1000\n")
	r, err := parsePS(out, []int{200, 201})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(r.Titles, []string{"UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"}) || len(r.Processes) != 2 {
		t.Fatalf("top: %+v", r)
	}
	if got := r.Processes[0]; got[1] != "200" || got[7] != "sh -c sleep 1000 & wait" {
		t.Errorf("row: %q", got)
	}
	if _, err := parsePS([]byte("USER COMMAND\nroot init\n"), []int{1}); err == nil {
		t.Error("output without PID parsed")
	}
	if _, err := parsePS([]byte("PID CMD\nabc x\n"), []int{1}); err == nil {
		t.Error("non-numeric PID parsed")
	}
}

func TestFieldsN(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want []string
	}{
		{"  a  b c d", 3, []string{"a", "b", "c d"}},
		{"a b", 3, []string{"a", "b"}},
		{"a\tb  c", 2, []string{"a", "b  c"}},
	} {
		if got := fieldsN(tc.in, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("fieldsN(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func TestValidatePSArgs(t *testing.T) {
	for args, ok := range map[string]bool{
		"-ef": true, "aux": true, "-o pid,comm": true, "-o pid=PID": true,
		"-o user=PID": false, "-o comm= -o x=PIDX": false,
	} {
		if err := validatePSArgs(args); (err == nil) != ok {
			t.Errorf("validatePSArgs(%q) = %v", args, err)
		}
	}
}
