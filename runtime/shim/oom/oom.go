// Package oom reads how often the kernel's OOM killer hit a cgroup, from
// plain files (no cgroup library), for the small shim monitor: at the
// init's exit and in its statistics (cgstat).
package oom

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Kills reads the oom_kill counter of a container's memory cgroup: cgroup
// v1 memory.oom_control under paths["memory"], or v2 memory.events under
// paths[""]. It is exact, where an eventfd notification may arrive after
// the init's exit was seen. Unreadable counters count as 0.
func Kills(paths map[string]string) uint64 {
	if p, ok := paths["memory"]; ok {
		if n, ok := readKeyed(filepath.Join(p, "memory.oom_control"), "oom_kill"); ok {
			return n
		}
	}
	if p, ok := paths[""]; ok {
		if n, ok := readKeyed(filepath.Join(p, "memory.events"), "oom_kill"); ok {
			return n
		}
	}
	return 0
}

// readKeyed reads the value of key from a "key value" per line file.
func readKeyed(path, key string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if ok && k == key {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
