package engine

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// cgroupFeatures are the optional cgroup settings the host can apply, as
// dockerd's sysinfo sees them: a request for one it lacks is discarded
// with dockerd's warning instead of failing in runc.
type cgroupFeatures struct {
	swappiness     bool // v1 memory.swappiness
	oomKillDisable bool // v1 memory.oom_control
	blkioWeight    bool // v1 blkio.weight or blkio.bfq.weight; v2 the io controller
}

var hostCgroupFeatures = sync.OnceValue(func() cgroupFeatures {
	exists := func(p string) bool { _, err := os.Stat(p); return err == nil }
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		return cgroupFeatures{blkioWeight: slices.Contains(strings.Fields(string(b)), "io")}
	}
	return cgroupFeatures{
		swappiness:     exists("/sys/fs/cgroup/memory/memory.swappiness"),
		oomKillDisable: exists("/sys/fs/cgroup/memory/memory.oom_control"),
		blkioWeight:    exists("/sys/fs/cgroup/blkio/blkio.weight") || exists("/sys/fs/cgroup/blkio/blkio.bfq.weight"),
	}
})

// discardUnsupported drops the settings of r the host cannot apply, with
// dockerd's warnings.
func discardUnsupported(r *container.Resources, f cgroupFeatures) []string {
	var warnings []string
	if r.MemorySwappiness != nil && *r.MemorySwappiness == -1 {
		r.MemorySwappiness = nil
	}
	if r.MemorySwappiness != nil && !f.swappiness {
		warnings = append(warnings, "Your kernel does not support memory swappiness capabilities or the cgroup is not mounted. Memory swappiness discarded.")
		r.MemorySwappiness = nil
	}
	if r.OomKillDisable != nil && !f.oomKillDisable {
		if *r.OomKillDisable {
			warnings = append(warnings, "Your kernel does not support OomKillDisable. OomKillDisable discarded.")
		}
		r.OomKillDisable = nil
	}
	if r.BlkioWeight > 0 && !f.blkioWeight {
		warnings = append(warnings, "Your kernel does not support Block I/O weight or the cgroup is not mounted. Weight discarded.")
		r.BlkioWeight = 0
	}
	return warnings
}

// recursiveReadOnly says whether the kernel has mount_setattr (5.12), which
// recursively read-only mounts need.
var recursiveReadOnly = sync.OnceValue(func() bool {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return false
	}
	return kernelAtLeast(unix.ByteSliceToString(u.Release[:]), 5, 12)
})

// kernelAtLeast compares a release string ("6.1.0-18-amd64") with
// major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimRightFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}
