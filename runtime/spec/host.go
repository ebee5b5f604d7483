package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// AppArmorEnabled reports whether the running kernel enforces AppArmor.
// When it does not, Generate ignores every AppArmor request, as containerd
// does; front ends use this to advertise the feature truthfully.
func AppArmorEnabled() bool { return appArmorEnabled() }

var appArmorEnabled = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && bytes.HasPrefix(b, []byte("Y"))
})

// CurrentOOMScoreAdj returns the calling process's oom_score_adj, the floor
// to pass as Container.MinOOMScoreAdj.
func CurrentOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, fmt.Errorf("read own oom_score_adj: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("read own oom_score_adj: %w", err)
	}
	return n, nil
}

// DevicesFromPath describes the device node at hostPath, or every device
// node below it when it is a directory, as devices at containerPath (or the
// same path when empty). permissions is the cgroup access ("rwm" when
// empty).
func DevicesFromPath(hostPath, containerPath, permissions string) ([]Device, error) {
	if containerPath == "" {
		containerPath = hostPath
	}
	if err := validPermissions(permissions); err != nil {
		return nil, fmt.Errorf("device %s: %w", hostPath, err)
	}
	fi, err := os.Stat(hostPath)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("device %s: %w: %w", hostPath, errdefs.ErrNotFound, err)
		}
		return nil, fmt.Errorf("device %s: %w", hostPath, err)
	}
	if !fi.IsDir() {
		d, ok, err := deviceFromInfo(hostPath, containerPath, permissions)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("device %s: not a device node: %w", hostPath, errdefs.ErrInvalidArgument)
		}
		return []Device{d}, nil
	}
	var out []Device
	err = filepath.WalkDir(hostPath, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() {
			return nil
		}
		rel, err := filepath.Rel(hostPath, p)
		if err != nil {
			return err
		}
		d, ok, err := deviceFromInfo(p, filepath.Join(containerPath, rel), permissions)
		if err != nil {
			// A node that vanished while walking /dev is not an error.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ok {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("devices under %s: %w", hostPath, err)
	}
	return out, nil
}

// HostDevices lists the host's device nodes under /dev for a privileged
// container, skipping what the container gets on its own (its pts, shm,
// mqueue) and the host's console, as runc's and containerd's listing do.
func HostDevices() ([]Device, error) {
	var out []Device
	err := filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			switch e.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return filepath.SkipDir
			}
			return nil
		}
		if p == "/dev/console" {
			return nil
		}
		d, ok, err := deviceFromInfo(p, p, "rwm")
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if ok {
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list host devices: %w", err)
	}
	return out, nil
}

// deviceFromInfo stats one node without following a symlink; ok is false
// for anything that is not a char/block device or fifo.
func deviceFromInfo(hostPath, containerPath, permissions string) (Device, bool, error) {
	var st unix.Stat_t
	if err := unix.Lstat(hostPath, &st); err != nil {
		return Device{}, false, fmt.Errorf("stat device %s: %w", hostPath, &fs.PathError{Op: "lstat", Path: hostPath, Err: err})
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	case unix.S_IFIFO:
		typ = "p"
	default:
		return Device{}, false, nil
	}
	if permissions == "" {
		permissions = "rwm"
	}
	return Device{
		Path:        containerPath,
		Type:        typ,
		Major:       int64(unix.Major(st.Rdev)),
		Minor:       int64(unix.Minor(st.Rdev)),
		FileMode:    st.Mode &^ unix.S_IFMT,
		UID:         st.Uid,
		GID:         st.Gid,
		Permissions: permissions,
	}, true, nil
}

func validPermissions(p string) error {
	if strings.Trim(p, "rwm") != "" || len(p) > 3 {
		return fmt.Errorf("device permissions %q: want a combination of r, w, m: %w", p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// fileMode converts permission bits to the os.FileMode the spec wants.
func fileMode(m uint32) fs.FileMode {
	return fs.FileMode(m & 0o777)
}

// DeviceRequest is one host device a container asks for (CRI's Device,
// Docker's --device).
type DeviceRequest struct {
	HostPath      string
	ContainerPath string
	// Permissions are the cgroup access ("rwm" when empty).
	Permissions string
}

// ResolveDevices turns device requests into device nodes (each host path
// may be a directory of devices); privileged adds every host device, as
// containerd and dockerd do.
func ResolveDevices(privileged bool, reqs []DeviceRequest) ([]Device, error) {
	var out []Device
	if privileged {
		hd, err := HostDevices()
		if err != nil {
			return nil, fmt.Errorf("list host devices: %w", err)
		}
		out = append(out, hd...)
	}
	for _, d := range reqs {
		ds, err := DevicesFromPath(d.HostPath, d.ContainerPath, d.Permissions)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", d.HostPath, err)
		}
		out = append(out, ds...)
	}
	return out, nil
}

// MakeHostDirs creates the bind-mount sources that do not exist as
// directories, as the kubelet's hostPath volumes, containerd and Docker's
// -v expect.
func MakeHostDirs(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("create mount source %s: %w", p, err)
			}
		} else if err != nil {
			return fmt.Errorf("mount source %s: %w", p, err)
		}
	}
	return nil
}
