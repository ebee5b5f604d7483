package runtime

import (
	"errors"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// flagOptions are the mount(8) options that are flags, not data.
var flagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"ro":         {false, unix.MS_RDONLY},
	"rw":         {true, unix.MS_RDONLY},
	"nosuid":     {false, unix.MS_NOSUID},
	"suid":       {true, unix.MS_NOSUID},
	"nodev":      {false, unix.MS_NODEV},
	"dev":        {true, unix.MS_NODEV},
	"noexec":     {false, unix.MS_NOEXEC},
	"exec":       {true, unix.MS_NOEXEC},
	"noatime":    {false, unix.MS_NOATIME},
	"relatime":   {false, unix.MS_RELATIME},
	"nodiratime": {false, unix.MS_NODIRATIME},
	"bind":       {false, unix.MS_BIND},
	"rbind":      {false, unix.MS_BIND | unix.MS_REC},
}

// mountAll mounts ms, in order, on target.
func mountAll(ms []Mount, target string) error {
	for i, mnt := range ms {
		var flags uintptr
		var data []string
		for _, o := range mnt.Options {
			if f, ok := flagOptions[o]; ok {
				if f.clear {
					flags &^= f.flag
				} else {
					flags |= f.flag
				}
				continue
			}
			data = append(data, o)
		}
		typ := mnt.Type
		if typ == "bind" || typ == "rbind" {
			flags |= unix.MS_BIND
			if typ == "rbind" {
				flags |= unix.MS_REC
			}
			typ = ""
		}
		d := strings.Join(data, ",")
		if len(d) >= unix.Getpagesize() {
			return fmt.Errorf("mount %s on %s: options longer than a page: %w", mnt.Type, target, errdefs.ErrInvalidArgument)
		}
		bind := flags&unix.MS_BIND != 0
		first := flags
		if bind {
			// A bind mount ignores MS_RDONLY until remounted.
			first &^= unix.MS_RDONLY
		}
		if err := unix.Mount(mnt.Source, target, typ, first, d); err != nil {
			_ = unmountAll(target)
			return fmt.Errorf("mount %s %s on %s: %w", mnt.Type, mnt.Source, target, err)
		}
		if bind && flags&unix.MS_RDONLY != 0 {
			if err := unix.Mount("", target, "", flags|unix.MS_REMOUNT, ""); err != nil {
				_ = unmountAll(target)
				return fmt.Errorf("make mount %d on %s read-only: %w", i, target, err)
			}
		}
	}
	return nil
}

// unmountAll removes every mount stacked on target. A target that is not a
// mount point (or gone) is fine.
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

// upperDir returns the upperdir= of an overlay among ms.
func upperDir(ms []Mount) string {
	for _, m := range ms {
		if m.Type != "overlay" {
			continue
		}
		for _, o := range m.Options {
			if v, ok := strings.CutPrefix(o, "upperdir="); ok {
				return v
			}
		}
	}
	if len(ms) == 1 && ms[0].Type == "bind" {
		for _, o := range ms[0].Options {
			if o == "rw" {
				return ms[0].Source
			}
		}
	}
	return ""
}
