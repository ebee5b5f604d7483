package libct

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// missingCgroupDirs lists, deepest first, the cgroup directories that
// creating a container with c will make: its own and the parents that do
// not exist yet. libcontainer's Destroy removes only the container's own
// directory; the shim removes the rest, and only those it created, so a pod
// cgroup made by the kubelet is never touched.
func missingCgroupDirs(c *cgroups.Cgroup) ([]string, error) {
	m, err := manager.New(c)
	if err != nil {
		return nil, fmt.Errorf("resolve cgroup paths: %w", err)
	}
	seen := map[string]bool{}
	var dirs []string
	for _, p := range m.GetPaths() {
		for d := filepath.Clean(p); d != "/" && strings.HasPrefix(d, "/sys/fs/cgroup/"); d = filepath.Dir(d) {
			if _, err := os.Stat(d); err == nil {
				break
			}
			if !seen[d] {
				seen[d] = true
				dirs = append(dirs, d)
			}
		}
	}
	sort.Slice(dirs, func(i, j int) bool {
		return strings.Count(dirs[i], "/") > strings.Count(dirs[j], "/")
	})
	return dirs, nil
}

// removeCgroupDirs removes dirs deepest first. A directory still holding
// another container's cgroup (EBUSY, ENOTEMPTY) is left for that one.
func removeCgroupDirs(dirs []string) error {
	var errs []error
	for _, d := range dirs {
		err := unix.Rmdir(d)
		switch {
		case err == nil, errors.Is(err, unix.ENOENT), errors.Is(err, unix.EBUSY), errors.Is(err, unix.ENOTEMPTY):
		default:
			errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
		}
	}
	return errors.Join(errs...)
}
