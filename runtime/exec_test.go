package runtime

import (
	"slices"
	"testing"
)

func TestMergeEnv(t *testing.T) {
	for _, tc := range []struct {
		env, set, want []string
	}{
		{nil, nil, nil},
		{[]string{"A=1", "B=2"}, nil, []string{"A=1", "B=2"}},
		{[]string{"A=1", "B=2"}, []string{"B=3", "C=4"}, []string{"A=1", "B=3", "C=4"}},
		// A key is the part before the first "=", values may hold more.
		{[]string{"A=x=y"}, []string{"A=z=w", "AB=1"}, []string{"A=z=w", "AB=1"}},
		{[]string{"A=1"}, []string{"A"}, []string{"A"}},
	} {
		if got := mergeEnv(tc.env, tc.set); !slices.Equal(got, tc.want) {
			t.Errorf("mergeEnv(%q, %q) = %q, want %q", tc.env, tc.set, got, tc.want)
		}
	}
}
