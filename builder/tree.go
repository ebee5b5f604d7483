package builder

import (
	"errors"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// tree is what COPY reads from: a directory on disk (a stage's or an
// image's mounted root, a download dir; diskTree) or the build context's
// index (ctxFS). Paths are relative to the tree's root, and symlinks
// resolve inside it.
type tree interface {
	// stat returns rel's metadata; follow resolves a final symlink.
	stat(rel string, follow bool) (unix.Stat_t, error)
	// readDir returns the entries of the directory rel, sorted by name,
	// each with its lstat.
	readDir(rel string) ([]treeEntry, error)
	readlink(rel string) (string, error)
	// open opens the regular file rel; follow resolves a final symlink.
	open(rel string, follow bool) (treeFile, error)
}

type treeEntry struct {
	name string
	st   unix.Stat_t
}

// treeFile is a regular file of a tree being read.
type treeFile interface {
	io.ReadSeeker
	io.Closer
	// xattrs are the file's extended attributes worth copying.
	xattrs() (map[string]string, error)
}

func (c *ctxFS) readDir(rel string) ([]treeEntry, error) {
	n, err := c.lookup(rel, true)
	if err != nil {
		return nil, err
	}
	if !n.isDir() {
		return nil, ctxPathError(rel, unix.ENOTDIR)
	}
	out := make([]treeEntry, 0, len(n.kids))
	for name, kid := range n.kids {
		out = append(out, treeEntry{name: name, st: kid.stat()})
	}
	slices.SortFunc(out, func(a, b treeEntry) int { return strings.Compare(a.name, b.name) })
	return out, nil
}

// diskTree is a directory tree on disk, by an O_PATH descriptor of its
// root (which the caller closes).
type diskTree struct{ fd int }

func (t diskTree) stat(rel string, follow bool) (unix.Stat_t, error) {
	flags := unix.O_PATH
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	var st unix.Stat_t
	fd, err := inRoot(t.fd, rel, flags)
	if err != nil {
		return st, err
	}
	defer unix.Close(fd)
	return st, unix.Fstat(fd, &st)
}

func (t diskTree) readDir(rel string) ([]treeEntry, error) {
	fd, err := inRoot(t.fd, rel, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	out := make([]treeEntry, 0, len(names))
	for _, name := range names {
		e := treeEntry{name: name}
		if err := unix.Fstatat(fd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // removed meanwhile
			}
			return nil, &os.PathError{Op: "stat", Path: rel + "/" + name, Err: err}
		}
		out = append(out, e)
	}
	return out, nil
}

func (t diskTree) readlink(rel string) (string, error) {
	dir, base := splitLast(rel)
	dfd, err := inRoot(t.fd, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dfd, base, buf)
	if err != nil {
		return "", &os.PathError{Op: "readlink", Path: rel, Err: err}
	}
	return string(buf[:n]), nil
}

func (t diskTree) open(rel string, follow bool) (treeFile, error) {
	flags := unix.O_RDONLY
	if !follow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := inRoot(t.fd, rel, flags)
	if err != nil {
		return nil, err
	}
	return diskFile{os.NewFile(uintptr(fd), rel)}, nil
}

type diskFile struct{ *os.File }

// xattrs lists the file's extended attributes but overlay's own and the
// system namespace (ACLs, which COPY does not carry).
func (f diskFile) xattrs() (map[string]string, error) {
	buf := make([]byte, 4096)
	n, err := unix.Flistxattr(int(f.Fd()), buf)
	if err != nil || n == 0 {
		return nil, nil
	}
	var out map[string]string
	v := make([]byte, 64<<10)
	for _, name := range strings.Split(string(buf[:n]), "\x00") {
		if name == "" || strings.HasPrefix(name, "trusted.overlay.") || strings.HasPrefix(name, "system.") {
			continue
		}
		vn, err := unix.Fgetxattr(int(f.Fd()), name, v)
		if err != nil {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = string(v[:vn])
	}
	return out, nil
}

// splitLast splits a relative path into its directory ("." for none) and
// last component.
func splitLast(rel string) (string, string) {
	rel = strings.Trim(rel, "/")
	i := strings.LastIndexByte(rel, '/')
	if i < 0 {
		return ".", rel
	}
	return rel[:i], rel[i+1:]
}
