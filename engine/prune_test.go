package engine

import (
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func TestParseUntil(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"24h":                       now.Add(-24 * time.Hour),
		"10m":                       now.Add(-10 * time.Minute),
		"1700000000":                time.Unix(1700000000, 0),
		"1700000000.5":              time.Unix(1700000000, 5e8),
		"2026-01-02T03:04:05Z":      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		"2026-01-02T03:04:05+02:00": time.Date(2026, 1, 2, 1, 4, 5, 0, time.UTC),
	} {
		got, err := parseUntil(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseUntil(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if got, err := parseUntil("2026-01-02", now); err != nil || got.Year() != 2026 || got.Day() != 2 {
		t.Errorf("date: %v %v", got, err)
	}
	for _, bad := range []string{"yesterday", "", "1h2"} {
		if _, err := parseUntil(bad, now); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseUntil(%q): %v", bad, err)
		}
	}
}

func TestPruneFilter(t *testing.T) {
	now := time.Now()
	if _, err := parsePruneFilters(map[string][]string{"color": {"red"}}, now); !errdefs.IsInvalidArgument(err) {
		t.Errorf("unknown key: %v", err)
	}
	if _, err := parsePruneFilters(map[string][]string{"until": {"1h", "2h"}}, now); !errdefs.IsInvalidArgument(err) {
		t.Errorf("two untils: %v", err)
	}
	f, err := parsePruneFilters(map[string][]string{"until": {"1h"}, "label": {"a", "b=2"}, "label!": {"c=3"}}, now)
	if err != nil {
		t.Fatal(err)
	}
	old := now.Add(-2 * time.Hour)
	for _, tc := range []struct {
		created time.Time
		labels  map[string]string
		want    bool
	}{
		{old, map[string]string{"a": "x", "b": "2"}, true},
		{now, map[string]string{"a": "x", "b": "2"}, false},
		{old, map[string]string{"a": "x", "b": "1"}, false},
		{old, map[string]string{"b": "2"}, false},
		{old, map[string]string{"a": "", "b": "2", "c": "3"}, false},
		{old, map[string]string{"a": "", "b": "2", "c": "4"}, true},
	} {
		if got := f.match(tc.created, tc.labels); got != tc.want {
			t.Errorf("match(%v, %v) = %v", tc.created, tc.labels, got)
		}
	}
}
