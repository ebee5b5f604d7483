package runtime

import (
	"bufio"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime/spec"
)

// hostCgroups are the facts about this host's cgroups that decide which
// limits runc can apply. runc fails a container whose spec asks for a
// limit without a place to write it ("cannot set hugetlb limit: container
// could not join or create cgroup"), and the kubelet asks for some of them
// on every host: hugepage limits for each page size the kernel has (even
// where the hugetlb controller is not mounted), memory+swap wherever it
// thinks there is swap accounting. Docker and containerd drop such limits
// (Docker with a warning, containerd's tolerate_missing_hugetlb_controller
// and its swap check); so does Berth, unless Config.StrictResources.
type hostCgroups struct {
	// v2 is a unified host. A hybrid host is v1 to runc: its cgroup2
	// mount serves no controller runc uses.
	v2 bool
	// controllers are the v1 controllers mounted as v1 hierarchies, or
	// the controllers of the v2 root (cgroup.controllers).
	controllers map[string]bool
	// swap is swap accounting: memory.memsw.* (v1) or memory.swap.max (v2).
	swap bool
	// cfs is CFS bandwidth control (cpu.cfs_quota_us on v1, cpu.max on v2).
	cfs bool
	// hugepageSizes are the page sizes the kernel has, in runc's notation
	// ("2MB", "1GB").
	hugepageSizes map[string]bool
}

// probeCgroups reads the host's cgroup facts from /proc/self/mountinfo,
// /proc/self/cgroup and /sys.
func probeCgroups() hostCgroups {
	h := hostCgroups{controllers: map[string]bool{}, hugepageSizes: map[string]bool{}}
	if ents, err := os.ReadDir("/sys/kernel/mm/hugepages"); err == nil {
		for _, e := range ents {
			if s, ok := hugepageSize(e.Name()); ok {
				h.hugepageSizes[s] = true
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		h.v2 = true
		for _, c := range strings.Fields(string(b)) {
			h.controllers[c] = true
		}
		h.cfs = h.controllers["cpu"]
		h.swap = v2SwapAccounting()
		return h
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return h
	}
	mounts := v1Mounts(string(mi))
	for c := range mounts {
		h.controllers[c] = true
	}
	exists := func(ctrl, file string) bool {
		p, ok := mounts[ctrl]
		if !ok {
			return false
		}
		_, err := os.Stat(filepath.Join(p, file))
		return err == nil
	}
	h.swap = exists("memory", "memory.memsw.limit_in_bytes")
	h.cfs = exists("cpu", "cpu.cfs_quota_us")
	return h
}

// v1Mounts maps each controller mounted as a cgroup v1 hierarchy to its
// mount point, from mountinfo. Named hierarchies (name=systemd) are not
// controllers.
func v1Mounts(mountinfo string) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(mountinfo))
	for sc.Scan() {
		// id parent maj:min root point options [optional...] - fstype source superopts
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if sep < 5 || sep+3 >= len(f) || f[sep+1] != "cgroup" {
			continue
		}
		for _, o := range strings.Split(f[sep+3], ",") {
			switch {
			case o == "rw" || o == "ro" || strings.Contains(o, "="):
			case o == "clone_children" || o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" || o == "favordynmods":
			default:
				if _, ok := out[o]; !ok {
					out[o] = f[4]
				}
			}
		}
	}
	return out
}

// v2SwapAccounting looks for memory.swap.max, which the root cgroup lacks:
// in berthd's own cgroup, else in any child of the root (as the kubelet's
// and containerd's checks do, with the fallback for a daemon in the root).
func v2SwapAccounting() bool {
	if b, err := os.ReadFile("/proc/self/cgroup"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if rel, ok := strings.CutPrefix(l, "0::"); ok && rel != "/" {
				_, err := os.Stat(filepath.Join("/sys/fs/cgroup", rel, "memory.swap.max"))
				return err == nil
			}
		}
	}
	m, _ := filepath.Glob("/sys/fs/cgroup/*/memory.swap.max")
	return len(m) > 0
}

// hugepageSize turns a /sys/kernel/mm/hugepages entry ("hugepages-2048kB")
// into runc's page size name ("2MB"), the one the kubelet sends.
func hugepageSize(dir string) (string, bool) {
	s, ok := strings.CutPrefix(dir, "hugepages-")
	if !ok {
		return "", false
	}
	s, ok = strings.CutSuffix(s, "kB")
	if !ok {
		return "", false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return "", false
	}
	units := []string{"KB", "MB", "GB", "TB", "PB"}
	i := 0
	for n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return strconv.FormatUint(n, 10) + units[i], true
}

// fit returns r without the limits this host cannot apply, and a phrase
// for each limit it dropped. A memory limit on a host without swap
// accounting also gets NoSwapLimit: the default memory+swap limit (equal
// to the memory limit) has nowhere to go either.
func (h hostCgroups) fit(r spec.Resources) (spec.Resources, []string) {
	var dropped []string
	drop := func(what, why string) { dropped = append(dropped, what+" ("+why+")") }
	noCtrl := func(c string) string { return "no " + c + " cgroup controller" }
	if r.CPUShares != 0 && !h.controllers["cpu"] {
		drop("cpu shares", noCtrl("cpu"))
		r.CPUShares = 0
	}
	if r.CPUQuota != 0 || r.CPUPeriod != 0 {
		switch {
		case !h.controllers["cpu"]:
			drop("cpu quota and period", noCtrl("cpu"))
			r.CPUQuota, r.CPUPeriod = 0, 0
		case !h.cfs:
			drop("cpu quota and period", "no CFS bandwidth control in the kernel")
			r.CPUQuota, r.CPUPeriod = 0, 0
		}
	}
	if (r.CpusetCpus != "" || r.CpusetMems != "") && !h.controllers["cpuset"] {
		drop("cpuset", noCtrl("cpuset"))
		r.CpusetCpus, r.CpusetMems = "", ""
	}
	if (r.MemoryLimit != 0 || r.MemorySwap != nil) && !h.controllers["memory"] {
		drop("memory limit", noCtrl("memory"))
		r.MemoryLimit, r.MemorySwap = 0, nil
	}
	if !h.swap {
		if r.MemorySwap != nil {
			drop("memory+swap limit", "no swap accounting")
			r.MemorySwap = nil
		}
		r.NoSwapLimit = r.MemoryLimit != 0
	}
	if r.PidsLimit != 0 && !h.controllers["pids"] {
		drop("pids limit", noCtrl("pids"))
		r.PidsLimit = 0
	}
	if len(r.HugepageLimits) > 0 {
		if !h.controllers["hugetlb"] {
			drop("hugepage limits", noCtrl("hugetlb"))
			r.HugepageLimits = nil
		} else {
			var keep []spec.HugepageLimit
			for _, l := range r.HugepageLimits {
				if h.hugepageSizes[l.PageSize] {
					keep = append(keep, l)
				} else {
					drop("hugepage limit "+l.PageSize, "no such page size on this host")
				}
			}
			r.HugepageLimits = keep
		}
	}
	if len(r.Unified) > 0 {
		if !h.v2 {
			drop("unified "+strings.Join(slices.Sorted(maps.Keys(r.Unified)), ", "), "cgroup v1 host")
			r.Unified = nil
		} else {
			keep := map[string]string{}
			for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
				ctrl, _, _ := strings.Cut(k, ".")
				switch {
				case ctrl != "cgroup" && !h.controllers[ctrl]:
					drop("unified "+k, noCtrl(ctrl))
				case strings.HasPrefix(k, "memory.swap.") && !h.swap:
					drop("unified "+k, "no swap accounting")
				default:
					keep[k] = r.Unified[k]
				}
			}
			r.Unified = keep
			if len(keep) == 0 {
				r.Unified = nil
			}
		}
	}
	return r, dropped
}

// fitResources applies hostCgroups.fit for one container: dropped limits
// are logged at debug level, or, with Config.StrictResources, refused.
func (m *Manager) fitResources(ctx context.Context, id string, r spec.Resources) (spec.Resources, error) {
	out, dropped := m.cgroups.fit(r)
	if len(dropped) == 0 {
		return out, nil
	}
	if m.cfg.StrictResources {
		return r, fmt.Errorf("this host cannot apply %s (strict_resources is on): %w", strings.Join(dropped, ", "), errdefs.ErrFailedPrecondition)
	}
	logctx.From(ctx).DebugContext(ctx, "dropped limits this host cannot apply", "id", id, "dropped", dropped)
	return out, nil
}
