package spec

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultShmSize is Docker's and containerd's /dev/shm size.
const defaultShmSize = 64 << 20

// defaultMounts are containerd's default Linux mounts without /run (the CRI
// plugin removes it), plus the cgroup mount the CRI plugin adds. /dev/shm is
// added separately from Container.Shm.
func defaultMounts(privileged bool) []specs.Mount {
	ro := "ro"
	if privileged {
		// Privileged containers may write /sys and the cgroup tree, as
		// under containerd.
		ro = "rw"
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", ro}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", ro}},
	}
}

func shmMount(s Shm) (specs.Mount, error) {
	if s.Source != "" {
		return specs.Mount{Destination: "/dev/shm", Type: "bind", Source: s.Source, Options: []string{"rbind", "rprivate", "rw"}}, nil
	}
	size := s.Size
	if size == 0 {
		size = defaultShmSize
	}
	if size < 0 {
		return specs.Mount{}, fmt.Errorf("shm size %d: %w", size, errdefs.ErrInvalidArgument)
	}
	return specs.Mount{
		Destination: "/dev/shm", Type: "tmpfs", Source: "shm",
		Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=" + strconv.FormatInt(size, 10)},
	}, nil
}

// fileMounts bind-mounts the pod's /etc files; they are read-only when the
// rootfs is, as in containerd.
func fileMounts(f Files, readOnly bool) []specs.Mount {
	mode := "rw"
	if readOnly {
		mode = "ro"
	}
	var out []specs.Mount
	for _, m := range []struct{ src, dst string }{
		{f.HostnamePath, "/etc/hostname"},
		{f.HostsPath, "/etc/hosts"},
		{f.ResolvConfPath, "/etc/resolv.conf"},
	} {
		if m.src == "" {
			continue
		}
		out = append(out, specs.Mount{Destination: m.dst, Type: "bind", Source: m.src, Options: []string{"rbind", "rprivate", mode}})
	}
	return out
}

// userMount converts one caller mount.
func userMount(m Mount) (specs.Mount, error) {
	if !path.IsAbs(m.Destination) {
		return specs.Mount{}, fmt.Errorf("mount destination %q: not absolute: %w", m.Destination, errdefs.ErrInvalidArgument)
	}
	typ := m.Type
	if typ == "" {
		typ = "bind"
	}
	bind := typ == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
	if bind && !path.IsAbs(m.Source) {
		return specs.Mount{}, fmt.Errorf("bind mount %s: source %q not absolute: %w", m.Destination, m.Source, errdefs.ErrInvalidArgument)
	}
	if m.RecursiveReadOnly {
		// Same rule as the CRI: a recursively read-only tree cannot
		// receive mounts from the host, and "rro" without "ro" is
		// meaningless.
		if !m.ReadOnly {
			return specs.Mount{}, fmt.Errorf("mount %s: recursive read-only needs read-only: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
		if m.Propagation != PropagationPrivate {
			return specs.Mount{}, fmt.Errorf("mount %s: recursive read-only needs private propagation: %w", m.Destination, errdefs.ErrInvalidArgument)
		}
	}

	var opts []string
	if bind && !slices.Contains(m.Options, "bind") && !slices.Contains(m.Options, "rbind") {
		opts = append(opts, "rbind")
	}
	for _, o := range m.Options {
		switch o {
		case "ro", "rw", "rro",
			"private", "rprivate", "slave", "rslave", "shared", "rshared":
			// Decided by the typed fields below; a stray option here
			// must not contradict them.
			continue
		}
		opts = append(opts, o)
	}
	if bind {
		var p string
		switch m.Propagation {
		case PropagationPrivate:
			p = "private"
		case PropagationHostToContainer:
			p = "slave"
		case PropagationBidirectional:
			p = "shared"
		default:
			return specs.Mount{}, fmt.Errorf("mount %s: unknown propagation %d: %w", m.Destination, m.Propagation, errdefs.ErrInvalidArgument)
		}
		if !m.NonRecursivePropagation {
			p = "r" + p
		}
		opts = append(opts, p)
	}
	if m.ReadOnly {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}
	if m.RecursiveReadOnly {
		opts = append(opts, "rro")
	}
	return specs.Mount{
		Destination: path.Clean(m.Destination),
		Type:        typ,
		Source:      m.Source,
		Options:     opts,
		UIDMappings: m.UIDMappings,
		GIDMappings: m.GIDMappings,
	}, nil
}

// buildMounts merges defaults, /dev/shm, the pod files and the caller's
// mounts. Caller mounts win over defaults on the same destination, and are
// ordered parents first so that a mount inside another is not hidden.
func buildMounts(c Container) ([]specs.Mount, string, error) {
	var user []specs.Mount
	for _, m := range c.Mounts {
		sm, err := userMount(m)
		if err != nil {
			return nil, "", err
		}
		user = append(user, sm)
	}
	// Stable sort by depth: "/a" before "/a/b", equal depths keep the
	// caller's order (containerd does the same).
	slices.SortStableFunc(user, func(a, b specs.Mount) int {
		return depth(a.Destination) - depth(b.Destination)
	})
	taken := func(dst string) bool {
		return slices.ContainsFunc(user, func(m specs.Mount) bool { return m.Destination == dst })
	}
	devTaken := taken("/dev")

	var out []specs.Mount
	for _, m := range defaultMounts(c.Privileged) {
		if taken(m.Destination) || (devTaken && strings.HasPrefix(m.Destination, "/dev/")) {
			continue
		}
		out = append(out, m)
	}
	if !taken("/dev/shm") && !devTaken {
		shm, err := shmMount(c.Shm)
		if err != nil {
			return nil, "", err
		}
		out = append(out, shm)
	}
	for _, m := range fileMounts(c.Files, c.ReadOnlyRootfs) {
		if !taken(m.Destination) {
			out = append(out, m)
		}
	}
	out = append(out, user...)

	// A shared or slave mount only works if the container's root mount
	// propagates too; containerd sets the rootfs propagation the same way.
	rootProp := ""
	for _, m := range user {
		switch {
		case slices.Contains(m.Options, "rshared") || slices.Contains(m.Options, "shared"):
			rootProp = "rshared"
		case (slices.Contains(m.Options, "rslave") || slices.Contains(m.Options, "slave")) && rootProp == "":
			rootProp = "rslave"
		}
	}
	return out, rootProp, nil
}

func depth(p string) int {
	p = path.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}
