package runtime

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// migrationWarmer takes the cost of a cgroup migration off the start path.
//
// Moving a process into a cgroup (a write to cgroup.procs, as runc does for
// a container's init) takes the
// kernel's global cgroup_threadgroup_rwsem for writing. When no migration
// happened for a while, that first waits for an RCU grace period: 5-6 ms
// (up to 15) on this kind of 2-core VM, a fifth of a container's creation.
// Migrations that follow within about one grace period are cheap. So at the
// start of an operation that will migrate a process a few milliseconds
// later, warm starts a migration of berthd into the cgroup it is already
// in (a no-op that still takes the lock) in the background: the grace
// period elapses while berthd mounts the rootfs and the shim starts, and the
// real migration finds the lock fast. (CreateSandbox moves the pause holder
// while the CNI ADD runs, where the wait costs nothing.)
//
// Kernels with the cgroup "favordynmods" mount option in effect keep the
// lock in that state at all times; the warmer is then off.
type migrationWarmer struct {
	// procs is cgroup.procs of berthd's own cgroup in one hierarchy; ""
	// turns the warmer off.
	procs string
	pid   []byte
	busy  atomic.Bool
}

func newMigrationWarmer() *migrationWarmer {
	w := &migrationWarmer{pid: []byte(strconv.Itoa(os.Getpid()))}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return w
	}
	own, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return w
	}
	w.procs = pickProcsFile(string(mounts), string(own))
	return w
}

// pickProcsFile returns the cgroup.procs file of the process's cgroup in
// the cgroup2 hierarchy or else a v1 one, from mountinfo and
// /proc/self/cgroup; "" if favordynmods is on or nothing fits.
func pickProcsFile(mountinfo, cgroup string) string {
	type hier struct{ root, point string }
	var v2 *hier
	v1 := map[string]hier{} // controller -> mount
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		// id parent maj:min root point options [optional...] - fstype source superopts
		f := strings.Fields(sc.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+3 >= len(f) {
			continue
		}
		fstype, super := f[sep+1], f[sep+3]
		if fstype != "cgroup" && fstype != "cgroup2" {
			continue
		}
		if strings.Contains(super, "favordynmods") {
			return ""
		}
		h := hier{root: f[3], point: f[4]}
		if fstype == "cgroup2" {
			v2 = &h
			continue
		}
		for _, o := range strings.Split(super, ",") {
			v1[o] = h
		}
	}
	for _, line := range strings.Split(cgroup, "\n") {
		// hierarchy-id:controllers:path
		p := strings.SplitN(line, ":", 3)
		if len(p) != 3 {
			continue
		}
		var h hier
		switch {
		case p[0] == "0" && p[1] == "" && v2 != nil:
			h = *v2
		default:
			c := strings.Split(p[1], ",")[0]
			m, ok := v1[c]
			if !ok || c == "" {
				continue
			}
			h = m
		}
		rel := p[2]
		if h.root != "/" {
			if !strings.HasPrefix(rel, h.root) {
				continue
			}
			rel = strings.TrimPrefix(rel, h.root)
		}
		return filepath.Join(h.point, rel, "cgroup.procs")
	}
	return ""
}

// warm starts a no-op migration in the background, unless one runs.
func (w *migrationWarmer) warm() {
	if w == nil || w.procs == "" || !w.busy.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer w.busy.Store(false)
		f, err := os.OpenFile(w.procs, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		// Errors are of no consequence: this only saves time.
		_, _ = f.Write(w.pid)
		_ = f.Close()
	}()
}
