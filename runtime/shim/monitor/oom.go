package monitor

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// oomKills reads the kernel's oom_kill counter of the container's memory
// cgroup (v1 memory.oom_control, v2 memory.events) from plain files, so
// the monitor needs no cgroup library. berth-runc's stats read the same.
func oomKills(paths map[string]string) uint64 {
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
