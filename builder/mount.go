package builder

import (
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
)

// mountAll mounts the snapshot mounts ms, in order, on target.
func mountAll(ms []imagestore.Mount, target string) error {
	for _, m := range ms {
		var flags uintptr
		var data []string
		for _, o := range m.Options {
			switch o {
			case "ro":
				flags |= unix.MS_RDONLY
			case "rw":
			case "bind":
				flags |= unix.MS_BIND
			case "rbind":
				flags |= unix.MS_BIND | unix.MS_REC
			default:
				data = append(data, o)
			}
		}
		typ := m.Type
		if typ == "bind" {
			flags |= unix.MS_BIND
			typ = ""
		}
		d := strings.Join(data, ",")
		if len(d) >= unix.Getpagesize() {
			return fmt.Errorf("mount %s on %s: options longer than a page: %w", m.Type, target, errdefs.ErrInvalidArgument)
		}
		first := flags
		if flags&unix.MS_BIND != 0 {
			// A bind mount ignores MS_RDONLY until remounted.
			first &^= unix.MS_RDONLY
		}
		if err := unix.Mount(m.Source, target, typ, first, d); err != nil {
			_ = unmountAll(target)
			return fmt.Errorf("mount %s %s on %s: %w", m.Type, m.Source, target, err)
		}
		if flags&unix.MS_BIND != 0 && flags&unix.MS_RDONLY != 0 {
			if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT, ""); err != nil {
				_ = unmountAll(target)
				return fmt.Errorf("make %s read-only: %w", target, err)
			}
		}
	}
	return nil
}

// unmountAll removes every mount stacked on target; a target that is not
// a mount point (or gone) is fine.
func unmountAll(target string) error {
	for range 64 {
		err := unix.Unmount(target, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 64 unmounts: %w", target, errdefs.ErrUnknown)
}

// unmountBelow unmounts every mount at or below dir, deepest first.
func unmountBelow(dir string) error {
	dir = filepath.Clean(dir)
	ms, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !(i.Mountpoint == dir || strings.HasPrefix(i.Mountpoint, dir+"/")), false
	})
	if err != nil {
		return fmt.Errorf("list mounts below %s: %w", dir, err)
	}
	sort.Slice(ms, func(i, j int) bool { return len(ms[i].Mountpoint) > len(ms[j].Mountpoint) })
	var errs []error
	for _, m := range ms {
		if err := unmountAll(m.Mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// overlayDirs returns the lower dirs (topmost first) and the upper dir of
// a snapshot's mounts; a bind mount of an upper dir has no lowers.
func overlayDirs(ms []imagestore.Mount) (lowers []string, upper string) {
	for _, m := range ms {
		if m.Type == "bind" && len(ms) == 1 {
			return nil, m.Source
		}
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
				lowers = strings.Split(v, ":")
			}
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				upper = v
			}
		}
	}
	return lowers, upper
}
