package cri

import (
	"testing"
	"time"
)

func TestCPURates(t *testing.T) {
	var r cpuRates
	t0 := time.Unix(1000, 0)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	for _, step := range []struct {
		name  string
		at    time.Duration
		usage uint64
		want  uint64
	}{
		{"first reading", 0, 1e9, 0},
		{"close behind: no window yet", 50 * time.Millisecond, 1e9, 0},
		{"a full second at half a core", time.Second, 1.5e9, 0.5e9},
		// An idle pod polled twice within a second: its counter has not
		// moved, but it used half a core over the last window.
		{"polled again at once", time.Second + 10*time.Millisecond, 1.5e9, 0.5e9},
		{"and again", time.Second + 500*time.Millisecond, 1.5e9, 0.5e9},
		{"two seconds at a quarter core", 3 * time.Second, 2e9, 0.25e9},
		{"a counter that went back starts over", 4 * time.Second, 1e6, 0},
		{"then measures again", 5 * time.Second, 1e6 + 2e9, 2e9},
	} {
		if got := r.rate("c", at(step.at), step.usage); got != step.want {
			t.Errorf("%s: rate = %d, want %d", step.name, got, step.want)
		}
	}
	// IDs are measured apart; drop forgets one.
	if got := r.rate("other", at(5*time.Second), 7); got != 0 {
		t.Errorf("first reading of another id = %d", got)
	}
	r.drop("c")
	if got := r.rate("c", at(6*time.Second), 9e9); got != 0 {
		t.Errorf("after drop: %d, want 0", got)
	}
}
