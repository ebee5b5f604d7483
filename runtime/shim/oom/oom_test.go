package oom

import (
	"os"
	"path/filepath"
	"testing"
)

func TestKills(t *testing.T) {
	v1, v2 := t.TempDir(), t.TempDir()
	if err := os.WriteFile(filepath.Join(v1, "memory.oom_control"), []byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(v2, "memory.events"), []byte("low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\noom_group_kill 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		paths map[string]string
		want  uint64
	}{
		"v1":      {map[string]string{"memory": v1, "cpu": v2}, 3},
		"v2":      {map[string]string{"": v2}, 2},
		"missing": {map[string]string{"memory": t.TempDir()}, 0},
		"none":    {nil, 0},
	} {
		if got := Kills(tc.paths); got != tc.want {
			t.Errorf("%s: Kills = %d, want %d", name, got, tc.want)
		}
	}
}
