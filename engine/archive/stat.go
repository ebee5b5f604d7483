package archive

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Stat describes the container path p under root as Docker's
// X-Docker-Container-Path-Stat header does: the directory part is resolved
// inside the root, the last element is not followed; when it is a symlink,
// LinkTarget is where it leads, fully resolved inside the root. A path
// that does not exist is errdefs.ErrNotFound with Docker's message.
func Stat(root, p string) (container.PathStat, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return container.PathStat{}, err
	}
	defer unix.Close(rootfd)
	dir, base := splitPath(p)
	dirfd, err := inRoot(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return container.PathStat{}, notFound(p, err)
	}
	defer unix.Close(dirfd)
	return statAt(root, dirfd, p, base)
}

// statAt stats base in dirfd ("" for dirfd itself).
func statAt(root string, dirfd int, p, base string) (container.PathStat, error) {
	var st unix.Stat_t
	name, flags := base, unix.AT_SYMLINK_NOFOLLOW
	if base == "" {
		name, flags = "", unix.AT_EMPTY_PATH
	}
	if err := unix.Fstatat(dirfd, name, &st, flags); err != nil {
		return container.PathStat{}, notFound(p, &os.PathError{Op: "lstat", Path: p, Err: err})
	}
	mode := fileMode(st.Mode)
	ps := container.PathStat{
		Name:  path.Base(cleanPath(p)),
		Size:  st.Size,
		Mode:  mode,
		Mtime: time.Unix(st.Mtim.Unix()),
	}
	if mode&os.ModeSymlink != 0 {
		target, err := resolveLink(root, p)
		if err != nil {
			return container.PathStat{}, fmt.Errorf("resolve symlink %s: %w", p, err)
		}
		ps.LinkTarget = target
	}
	return ps, nil
}

// resolveLink is where p leads, every symlink resolved inside root, as a
// container path. It resolves lexically as Docker's FollowSymlinkInScope
// does, so a dangling link still names its target; the result is only
// reported, never opened.
func resolveLink(root, p string) (string, error) {
	host, err := securejoin.SecureJoin(root, cleanPath(p))
	if err != nil {
		return "", err
	}
	r, err := filepath.Rel(root, host)
	if err != nil {
		return "", err
	}
	return cleanPath(filepath.ToSlash(r)), nil
}

// fileMode converts a stat mode to Go's, as os.Lstat does.
func fileMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFBLK:
		fm |= os.ModeDevice
	case unix.S_IFCHR:
		fm |= os.ModeDevice | os.ModeCharDevice
	case unix.S_IFDIR:
		fm |= os.ModeDir
	case unix.S_IFIFO:
		fm |= os.ModeNamedPipe
	case unix.S_IFLNK:
		fm |= os.ModeSymlink
	case unix.S_IFSOCK:
		fm |= os.ModeSocket
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}
