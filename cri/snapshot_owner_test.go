package cri

import (
	"strings"
	"testing"

	"github.com/berth-dev/berth/runtime"
)

func TestHoldsSnapshot(t *testing.T) {
	s, rt, _, _ := newTestService()
	known, lost := strings.Repeat("a", 64), strings.Repeat("b", 64)
	rt.containers = []*runtime.Container{{ID: known}}
	for _, tc := range []struct {
		name       string
		mine, held bool
	}{
		{known, true, true},
		{known + "-iv0", true, true},
		{lost, true, false},
		{lost + "-iv3", true, false},
		// A prefix of a known ID is not that container's.
		{known[:63], false, false},
		{"build-cache", false, false},
		{known + "-x", false, false},
		{strings.ToUpper(known), false, false},
	} {
		if mine, held := s.HoldsSnapshot(tc.name); mine != tc.mine || held != tc.held {
			t.Errorf("HoldsSnapshot(%q) = %v, %v; want %v, %v", tc.name, mine, held, tc.mine, tc.held)
		}
	}
}
