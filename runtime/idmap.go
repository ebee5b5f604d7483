package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// idmap says how a container's rootfs is remapped for its pod's user
// namespace: image files owned by host ID n appear as n inside.
type idmap struct {
	// userNS is a path to the user namespace (a pinned nsfs file or
	// /proc/<pid>/ns/user).
	userNS string
	uids   []specs.LinuxIDMapping
	gids   []specs.LinuxIDMapping
}

// hostID maps a container ID to the host's through ms; -1 if unmapped.
func hostID(ms []specs.LinuxIDMapping, id uint32) int {
	for _, m := range ms {
		if id >= m.ContainerID && id-m.ContainerID < m.Size {
			return int(m.HostID + id - m.ContainerID)
		}
	}
	return -1
}

// idmapBind attaches at target a copy of the mount tree at src whose IDs
// are mapped through the user namespace open as usernsFD (open_tree +
// mount_setattr(MOUNT_ATTR_IDMAP) + move_mount, Linux 5.12; the filesystem
// must support idmapped mounts).
func idmapBind(src, target string, usernsFD int, recursive bool) error {
	flags := unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC
	setFlags := unix.AT_EMPTY_PATH
	if recursive {
		flags |= unix.AT_RECURSIVE
		setFlags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, src, uint(flags))
	if err != nil {
		return fmt.Errorf("clone mount of %s: %w", src, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFD)}
	if err := unix.MountSetattr(fd, "", uint(setFlags), &attr); err != nil {
		return fmt.Errorf("idmap mount of %s: %w", src, classifyIDMapErr(err))
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach idmapped mount of %s on %s: %w", src, target, err)
	}
	return nil
}

func classifyIDMapErr(err error) error {
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EPERM) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotImplemented, err)
	}
	return err
}

// mountIDMapped mounts a rootfs for a container in a user namespace. The
// kernel cannot idmap an overlay mount itself, so, as containerd does, each
// lower dir is idmapped onto a scratch dir, the overlay is built from those,
// and the scratch mounts are detached (the overlay keeps its own references
// to its layers). The upper dir is not idmapped (overlayfs writes it with
// the caller's host IDs): its root is chowned to the host IDs of its owner
// inside, so the container's "/" belongs to its root.
func mountIDMapped(ms []Mount, target string, im idmap) (retErr error) {
	f, err := os.Open(im.userNS)
	if err != nil {
		return fmt.Errorf("open user namespace: %w", err)
	}
	defer f.Close()
	usernsFD := int(f.Fd())
	if len(ms) != 1 {
		return fmt.Errorf("idmap rootfs of %d mounts: %w", len(ms), errdefs.ErrNotImplemented)
	}
	mnt := ms[0]
	switch mnt.Type {
	case "bind", "rbind":
		ro := false
		recursive := mnt.Type == "rbind"
		for _, o := range mnt.Options {
			switch o {
			case "ro":
				ro = true
			case "rbind":
				recursive = true
			}
		}
		if err := idmapBind(mnt.Source, target, usernsFD, recursive); err != nil {
			return err
		}
		if ro {
			if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
				_ = unmountAll(target)
				return fmt.Errorf("make rootfs %s read-only: %w", target, err)
			}
		}
		return nil
	case "overlay":
	default:
		return fmt.Errorf("idmap rootfs of type %q: %w", mnt.Type, errdefs.ErrNotImplemented)
	}

	scratch := filepath.Join(filepath.Dir(target), "idmap")
	if err := os.Mkdir(scratch, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("idmap rootfs: %w", err)
	}
	var attached []string
	defer func() {
		// The overlay holds its layers: the scratch mounts go either way.
		for _, p := range attached {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && retErr == nil {
				retErr = fmt.Errorf("detach idmapped layer %s: %w", p, err)
			}
		}
		if err := os.RemoveAll(scratch); err != nil && retErr == nil {
			retErr = fmt.Errorf("remove idmap scratch dir: %w", err)
		}
		if retErr != nil {
			_ = unmountAll(target)
		}
	}()
	opts := make([]string, 0, len(mnt.Options))
	for _, o := range mnt.Options {
		switch {
		case strings.HasPrefix(o, "lowerdir="):
			lowers := strings.Split(strings.TrimPrefix(o, "lowerdir="), ":")
			for i, l := range lowers {
				p := filepath.Join(scratch, strconv.Itoa(i))
				if err := os.Mkdir(p, 0o700); err != nil {
					return fmt.Errorf("idmap rootfs: %w", err)
				}
				if err := idmapBind(l, p, usernsFD, false); err != nil {
					return err
				}
				attached = append(attached, p)
				lowers[i] = p
			}
			o = "lowerdir=" + strings.Join(lowers, ":")
		case strings.HasPrefix(o, "upperdir="):
			if err := chownToHost(strings.TrimPrefix(o, "upperdir="), im); err != nil {
				return err
			}
		}
		opts = append(opts, o)
	}
	return mountAll([]Mount{{Type: mnt.Type, Source: mnt.Source, Options: opts}}, target)
}

// chownToHost gives dir the host IDs its current owner has inside the user
// namespace (the snapshotter copied the topmost layer's root owner, a
// container ID). It is idempotent only for IDs already outside the
// mapping's range, which a fresh upper dir's are not: call it once.
func chownToHost(dir string, im idmap) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return fmt.Errorf("stat upper dir: %w", err)
	}
	uid, gid := hostID(im.uids, st.Uid), hostID(im.gids, st.Gid)
	if uid < 0 || gid < 0 {
		return fmt.Errorf("upper dir owner %d:%d is not mapped in the user namespace: %w", st.Uid, st.Gid, errdefs.ErrInvalidArgument)
	}
	if err := os.Lchown(dir, uid, gid); err != nil {
		return fmt.Errorf("chown upper dir to the pod's root: %w", err)
	}
	return nil
}

// UserNamespacesSupported reports whether containers in pod user
// namespaces work here, which needs idmapped rootfs layers: it builds a
// small overlay from an idmapped lower dir under Config.Root (the
// filesystem of the layers, normally) mapped through the user namespace of
// a short-lived pause process, and checks a file's owner through it. nil
// means supported; the error says what failed.
func (m *Manager) UserNamespacesSupported() error {
	tmp, err := os.MkdirTemp(m.cfg.Root, "idmap-probe-")
	if err != nil {
		return fmt.Errorf("probe idmapped mounts: %w", err)
	}
	defer os.RemoveAll(tmp)
	for _, d := range []string{"lower", "upper", "work", "merged"} {
		if err := os.Mkdir(filepath.Join(tmp, d), 0o755); err != nil {
			return fmt.Errorf("probe idmapped mounts: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tmp, "lower", "f"), nil, 0o644); err != nil {
		return fmt.Errorf("probe idmapped mounts: %w", err)
	}
	const probeHost = 65536
	// A holder never given its go-ahead: it stays in its user namespace
	// for the probe, and exits by itself should berthd die meanwhile.
	h, err := startPauseHolder(m.cfg.ShimBinary, &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: probeHost, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: probeHost, Size: 65536}},
	})
	if err != nil {
		return fmt.Errorf("probe idmapped mounts: start a process in a user namespace: %w", err)
	}
	cmd := h.cmd
	defer func() {
		h.abandon()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	ms := []Mount{{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + filepath.Join(tmp, "lower"), "upperdir=" + filepath.Join(tmp, "upper"), "workdir=" + filepath.Join(tmp, "work"),
	}}}
	u := []specs.LinuxIDMapping{{ContainerID: 0, HostID: probeHost, Size: 65536}}
	merged := filepath.Join(tmp, "merged")
	if err := mountIDMapped(ms, merged, idmap{userNS: fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid), uids: u, gids: u}); err != nil {
		return fmt.Errorf("probe idmapped mounts: %w", err)
	}
	defer unmountAll(merged)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(merged, "f"), &st); err != nil {
		return fmt.Errorf("probe idmapped mounts: %w", err)
	}
	if st.Uid != probeHost {
		return fmt.Errorf("probe idmapped mounts: a lower file owned by 0 shows as %d, not %d: %w", st.Uid, probeHost, errdefs.ErrNotImplemented)
	}
	return nil
}
