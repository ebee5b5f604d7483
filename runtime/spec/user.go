package spec

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/sys/user"
	"golang.org/x/sys/unix"
)

// ResolveUser resolves "user[:group]" (names or numbers) against the
// /etc/passwd and /etc/group files inside rootfs, the way containerd does
// for an image's User:
//
//   - a numeric user needs no passwd entry; its primary group is the entry's
//     group if there is one, else 0;
//   - a user name must exist in /etc/passwd (ErrNotFound otherwise);
//   - an explicit group replaces the primary group; a group name must exist
//     in /etc/group;
//   - with GroupsMerge, additional holds the groups /etc/group lists the user
//     in (the user's own primary group excluded); with GroupsStrict it is nil.
//
// The files are opened inside rootfs with symlinks resolved as if rootfs were
// "/", so an image cannot point them at host files.
func ResolveUser(rootfs, spec string, policy SupplementalGroupsPolicy) (uid, gid uint32, additional []uint32, err error) {
	if spec == "" {
		spec = "0"
	}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" || (hasGroup && groupPart == "") {
		return 0, 0, nil, fmt.Errorf("resolve user %q: empty user or group: %w", spec, errdefs.ErrInvalidArgument)
	}

	var userName string
	if n, numErr := parseID(userPart); numErr == nil {
		uid = n
		entries, err := readPasswd(rootfs, func(u user.User) bool { return u.Uid == int(n) })
		if err != nil {
			return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, err)
		}
		if len(entries) > 0 {
			gid = uint32(entries[0].Gid)
			userName = entries[0].Name
		}
	} else if errors.Is(numErr, errdefs.ErrInvalidArgument) {
		return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, numErr)
	} else {
		entries, err := readPasswd(rootfs, func(u user.User) bool { return u.Name == userPart })
		if err != nil {
			return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, err)
		}
		if len(entries) == 0 {
			return 0, 0, nil, fmt.Errorf("resolve user %q: no user %q in the image's /etc/passwd: %w", spec, userPart, errdefs.ErrNotFound)
		}
		if entries[0].Uid < 0 || entries[0].Gid < 0 {
			return 0, 0, nil, fmt.Errorf("resolve user %q: negative uid or gid in /etc/passwd: %w", spec, errdefs.ErrInvalidArgument)
		}
		uid, gid, userName = uint32(entries[0].Uid), uint32(entries[0].Gid), userPart
	}

	if hasGroup {
		if n, numErr := parseID(groupPart); numErr == nil {
			gid = n
		} else if errors.Is(numErr, errdefs.ErrInvalidArgument) {
			return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, numErr)
		} else {
			groups, err := readGroup(rootfs, func(g user.Group) bool { return g.Name == groupPart })
			if err != nil {
				return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, err)
			}
			if len(groups) == 0 {
				return 0, 0, nil, fmt.Errorf("resolve user %q: no group %q in the image's /etc/group: %w", spec, groupPart, errdefs.ErrNotFound)
			}
			gid = uint32(groups[0].Gid)
		}
	}

	if policy == GroupsStrict || userName == "" {
		return uid, gid, nil, nil
	}
	groups, err := readGroup(rootfs, func(g user.Group) bool {
		// A user's own group lists no members; only supplemental
		// memberships count, as in containerd.
		return g.Name != userName && slices.Contains(g.List, userName)
	})
	if err != nil {
		return 0, 0, nil, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	for _, g := range groups {
		if g.Gid >= 0 && !slices.Contains(additional, uint32(g.Gid)) {
			additional = append(additional, uint32(g.Gid))
		}
	}
	return uid, gid, additional, nil
}

// groupIDs looks group names up in rootfs' /etc/group, with dockerd's
// message for a missing one.
func groupIDs(rootfs string, names []string) ([]uint32, error) {
	var out []uint32
	for _, name := range names {
		groups, err := readGroup(rootfs, func(g user.Group) bool { return g.Name == name })
		if err != nil {
			return nil, fmt.Errorf("group %s: %w", name, err)
		}
		if len(groups) == 0 || groups[0].Gid < 0 {
			return nil, fmt.Errorf("Unable to find group %s: no matching entries in group file: %w", name, errdefs.ErrInvalidArgument)
		}
		out = append(out, uint32(groups[0].Gid))
	}
	return out, nil
}

// errNotNumeric says a user or group part is a name.
var errNotNumeric = errors.New("not numeric")

// parseID parses a numeric uid/gid; a name returns errNotNumeric, a number
// out of range ErrInvalidArgument.
func parseID(s string) (uint32, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, errNotNumeric
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > math.MaxUint32-1 {
		// 4294967295 is (uid_t)-1, "no change" to the kernel.
		return 0, fmt.Errorf("id %q out of range: %w", s, errdefs.ErrInvalidArgument)
	}
	return uint32(n), nil
}

func readPasswd(rootfs string, filter func(user.User) bool) ([]user.User, error) {
	var out []user.User
	err := withRootfsFile(rootfs, "/etc/passwd", func(r io.Reader) error {
		var err error
		out, err = user.ParsePasswdFilter(r, filter)
		return err
	})
	return out, err
}

func readGroup(rootfs string, filter func(user.Group) bool) ([]user.Group, error) {
	var out []user.Group
	err := withRootfsFile(rootfs, "/etc/group", func(r io.Reader) error {
		var err error
		out, err = user.ParseGroupFilter(r, filter)
		return err
	})
	return out, err
}

// withRootfsFile opens path inside rootfs without following any symlink out
// of it (openat2 RESOLVE_IN_ROOT where available) and hands it to read. A
// missing file is not an error: images without /etc/passwd are common, and
// the caller decides whether a lookup that finds nothing is one.
func withRootfsFile(rootfs, path string, read func(io.Reader) error) error {
	if rootfs == "" {
		return fmt.Errorf("read %s: no rootfs given: %w", path, errdefs.ErrInvalidArgument)
	}
	// A missing rootfs must not pass for an image without /etc/passwd.
	if fi, err := os.Stat(rootfs); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("read %s: rootfs %s: %w: %w", path, rootfs, errdefs.ErrNotFound, err)
		}
		return fmt.Errorf("read %s: rootfs %s: %w", path, rootfs, err)
	} else if !fi.IsDir() {
		return fmt.Errorf("read %s: rootfs %s is not a directory: %w", path, rootfs, errdefs.ErrInvalidArgument)
	}
	handle, err := pathrs.OpenInRoot(rootfs, path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("open %s in rootfs %s: %w", path, rootfs, err)
	}
	defer handle.Close()
	// Check the type on the O_PATH handle before opening for reading: a
	// fifo would block the open itself, a device would read host state.
	if fi, err := handle.Stat(); err != nil {
		return fmt.Errorf("stat %s in rootfs %s: %w", path, rootfs, err)
	} else if !fi.Mode().IsRegular() {
		return fmt.Errorf("read %s in rootfs %s: not a regular file: %w", path, rootfs, errdefs.ErrInvalidArgument)
	}
	f, err := pathrs.Reopen(handle, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK)
	if err != nil {
		return fmt.Errorf("open %s in rootfs %s: %w", path, rootfs, err)
	}
	defer f.Close()
	if err := read(io.LimitReader(f, maxEtcFileSize)); err != nil {
		return fmt.Errorf("parse %s in rootfs %s: %w", path, rootfs, err)
	}
	return nil
}

// maxEtcFileSize bounds how much of an image's /etc/passwd or /etc/group is
// read, so a hostile image cannot make the daemon read gigabytes.
const maxEtcFileSize = 16 << 20
