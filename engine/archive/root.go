// Package archive is what Docker's file endpoints do inside a container's
// file system: the stat behind X-Docker-Container-Path-Stat, the tar of a
// path (GET archive, `docker cp` out of a container), the extraction of an
// uploaded tar (PUT archive, `docker cp` into one), the tar of a whole root
// (export) and the changes held in an overlay upper directory (changes,
// `docker diff`).
//
// The root is a directory on the host holding the container's view (its
// mounted rootfs, with its volumes bound in). Paths are the container's:
// every symlink met while resolving one is resolved as if the root were
// "/" (openat2 RESOLVE_IN_ROOT), so neither an image nor a running
// container can lead an operation outside the root, absolute symlinks
// included; files are then opened relative to descriptors, never by host
// paths a container could swap under us. Uploaded tars are untrusted: an
// entry whose name or hard link target leaves the extraction directory,
// or a relative symlink pointing out of it, fails the extraction with an
// error naming the entry (errdefs.ErrInvalidArgument), as Docker refuses
// them.
package archive

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// cleanPath makes p (a container path, absolute or not) absolute and
// clean.
func cleanPath(p string) string { return path.Clean("/" + p) }

// rel is p (a clean absolute path) relative to the root, "." for "/".
func rel(p string) string {
	r := strings.TrimPrefix(p, "/")
	if r == "" {
		return "."
	}
	return r
}

// openRoot opens root for *at calls.
func openRoot(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open container root %s: %w", root, err)
	}
	return fd, nil
}

// inRoot opens p (a container path) with every symlink resolved inside
// the root rootfd refers to.
func inRoot(rootfd int, p string, flags int) (int, error) {
	p = cleanPath(p)
	var err error
	for range maxRetries {
		var fd int
		fd, err = unix.Openat2(rootfd, rel(p), &unix.OpenHow{
			Flags:   uint64(flags | unix.O_CLOEXEC),
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if err == nil {
			return fd, nil
		}
		// EAGAIN: a rename or mount anywhere on the host raced a ".."
		// (a symlink's) in the walk; the kernel asks to retry. Bounded:
		// on a busy host (or against a container that renames in a loop)
		// an unbounded retry spins.
		if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
			break
		}
	}
	return -1, &os.PathError{Op: "open", Path: p, Err: err}
}

// maxRetries bounds the retries of a path walk that raced.
const maxRetries = 64

// fdPath is the magic link that reopens fd.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// notFound wraps a lookup error as Docker words it for a container path.
func notFound(p string, err error) error {
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container", p)), err)
	}
	if errors.Is(err, unix.ENOTDIR) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container: a parent is not a directory", p)), err)
	}
	return err
}

// splitPath splits p as Docker's ResolvePath does: the directory is
// resolved inside the root, the last element is taken as it is (a symlink
// there is the link, not its target). A path ending in "/" or "/." names
// the directory itself: base is then "".
func splitPath(p string) (dir, base string) {
	if p == "" {
		p = "/"
	}
	if strings.HasSuffix(p, "/") || strings.HasSuffix(p, "/.") || p == "." {
		return cleanPath(p), ""
	}
	c := cleanPath(p)
	if c == "/" {
		return "/", ""
	}
	return path.Dir(c), path.Base(c)
}

// MountTarget opens the container path p under root for a mount on it
// (with every symlink resolved inside the root, so a container cannot
// aim the mount at a host path), making it when missing: a directory, or
// an empty file when dir is false, with its parents. The caller mounts
// on FdPath(f) and closes f.
func MountTarget(root, p string, dir bool) (*os.File, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	p = cleanPath(p)
	fd, err := inRoot(rootfd, p, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		if dir {
			fd, err = mkdirAllIn(rootfd, p)
		} else {
			parent, perr := mkdirAllIn(rootfd, path.Dir(p))
			if perr != nil {
				return nil, perr
			}
			f, cerr := unix.Openat(parent, path.Base(p), unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
			unix.Close(parent)
			if cerr == nil {
				unix.Close(f)
			} else if !errors.Is(cerr, unix.EEXIST) {
				return nil, fmt.Errorf("create mount point %s: %w", p, cerr)
			}
			fd, err = inRoot(rootfd, p, unix.O_PATH)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("mount point %s: %w", p, err)
	}
	return os.NewFile(uintptr(fd), p), nil
}

// FdPath is the magic link through which a file opened here is mounted on.
func FdPath(f *os.File) string { return fdPath(int(f.Fd())) }
