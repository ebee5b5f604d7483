package archive

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ExtractOptions are PUT archive's query options.
type ExtractOptions struct {
	// NoOverwriteDirNonDir refuses to replace a directory with a
	// non-directory or the other way round (noOverwriteDirNonDir).
	NoOverwriteDirNonDir bool
	// Owner, when set, owns everything extracted (copyUIDGID: the
	// container's user); otherwise the tar's uid and gid are kept.
	Owner *Owner
}

// Owner is a uid:gid.
type Owner struct{ UID, GID int }

// Extract unpacks the tar r into the directory dir, a container path
// under root, as Docker's PUT archive does: dir is resolved inside the
// root (a symlink to a directory is followed) and must be a directory;
// each entry's parent directories are resolved inside the root too and
// made when missing; the entry itself is created without following
// anything. A later entry replaces an earlier one; directory modes and
// times are set once everything is written.
//
// Refused with errdefs.ErrInvalidArgument and the entry named: a name or
// a hard link target that leaves dir ("../x"), a relative symlink whose
// target leaves dir, and entry types a file system cannot hold. A missing
// dir is errdefs.ErrNotFound, one that is not a directory
// ErrInvalidArgument ("extraction point is not a directory").
func Extract(ctx context.Context, root, dir string, r io.Reader, o ExtractOptions) error {
	rootfd, err := openRoot(root)
	if err != nil {
		return err
	}
	defer unix.Close(rootfd)
	dir = cleanPath(dir)
	fd, err := inRoot(rootfd, dir, unix.O_PATH)
	if err != nil {
		return notFound(dir, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(fd, &st)
	unix.Close(fd)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return errdefs.ErrInvalidArgument.WithMessage("extraction point is not a directory")
	}
	x := &extractor{ctx: ctx, rootfd: rootfd, dir: dir, opts: o, buf: make([]byte, 128<<10)}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, tar.ErrFieldTooLong) {
				return fmt.Errorf("extract into %s: read tar: %w: %w", dir, errdefs.ErrInvalidArgument, err)
			}
			return fmt.Errorf("extract into %s: read tar: %w", dir, err)
		}
		if err := x.entry(hdr, tr); err != nil {
			return fmt.Errorf("extract %q into %s: %w", hdr.Name, dir, err)
		}
	}
	return x.finishDirs()
}

type extractor struct {
	ctx    context.Context
	rootfd int
	dir    string
	opts   ExtractOptions
	buf    []byte
	// dirs are the directories whose mode and times are set at the end
	// (writing into one changes its mtime), deepest last.
	dirs []dirMeta
}

type dirMeta struct {
	path        string
	mode        uint32
	atime, mtim time.Time
}

// within is p (a tar name) as a path under the extraction dir; ok is
// false when it leaves it.
func (x *extractor) within(name string) (string, bool) {
	c := path.Clean(strings.TrimPrefix(name, "/"))
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", false
	}
	return path.Join(x.dir, c), true
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
	default:
		return fmt.Errorf("unsupported entry type %q: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
	p, ok := x.within(hdr.Name)
	if !ok {
		return fmt.Errorf("the entry's path leaves the extraction directory: %w", errdefs.ErrInvalidArgument)
	}
	if p == x.dir {
		// "./": the extraction point itself, which exists.
		return nil
	}
	parentPath, base := path.Dir(p), path.Base(p)
	parent, err := mkdirAllIn(x.rootfd, parentPath)
	if err != nil {
		return err
	}
	defer unix.Close(parent)

	isDir := hdr.Typeflag == tar.TypeDir
	var cur unix.Stat_t
	if err := unix.Fstatat(parent, base, &cur, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		curDir := cur.Mode&unix.S_IFMT == unix.S_IFDIR
		switch {
		case curDir && isDir:
			// Kept; its metadata is applied below.
		case x.opts.NoOverwriteDirNonDir && curDir:
			return fmt.Errorf("cannot overwrite directory %q with non-directory %q: %w", p, hdr.Name, errdefs.ErrInvalidArgument)
		case x.opts.NoOverwriteDirNonDir && isDir:
			return fmt.Errorf("cannot overwrite non-directory %q with directory %q: %w", p, hdr.Name, errdefs.ErrInvalidArgument)
		default:
			if err := removeAt(parent, base, curDir); err != nil {
				return err
			}
		}
	} else if !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("lstat %s: %w", p, err)
	}

	uid, gid := hdr.Uid, hdr.Gid
	if x.opts.Owner != nil {
		uid, gid = x.opts.Owner.UID, x.opts.Owner.GID
	}
	mode := uint32(hdr.Mode) & 0o7777
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := unix.Mkdirat(parent, base, 0o700); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("mkdir %s: %w", p, err)
		}
		if err := unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		x.dirs = append(x.dirs, dirMeta{path: p, mode: mode, atime: hdr.AccessTime, mtim: hdr.ModTime})
		return nil
	case tar.TypeReg:
		f, err := unix.Openat(parent, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", p, err)
		}
		file := os.NewFile(uintptr(f), p)
		_, err = io.CopyBuffer(file, r, x.buf)
		if err == nil {
			err = file.Chown(uid, gid)
		}
		if err == nil {
			// After the chown, which clears set-user-ID bits.
			err = unix.Fchmod(f, mode)
		}
		if cerr := file.Close(); err == nil {
			err = cerr
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return fmt.Errorf("write %s: truncated tar: %w: %w", p, errdefs.ErrInvalidArgument, err)
		}
		if err != nil {
			return fmt.Errorf("write %s: %w", p, err)
		}
	case tar.TypeSymlink:
		if !path.IsAbs(hdr.Linkname) {
			if _, ok := x.within(path.Join(strings.TrimPrefix(path.Dir(p), x.dir), hdr.Linkname)); !ok {
				return fmt.Errorf("invalid symlink %q -> %q: it leaves the extraction directory: %w", p, hdr.Linkname, errdefs.ErrInvalidArgument)
			}
		}
		if err := unix.Symlinkat(hdr.Linkname, parent, base); err != nil {
			return fmt.Errorf("symlink %s: %w", p, err)
		}
		if err := unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
	case tar.TypeLink:
		target, ok := x.within(hdr.Linkname)
		if !ok {
			return fmt.Errorf("invalid hard link %q -> %q: it leaves the extraction directory: %w", p, hdr.Linkname, errdefs.ErrInvalidArgument)
		}
		tparent, err := inRoot(x.rootfd, path.Dir(target), unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("hard link target %s: %w", hdr.Linkname, err)
		}
		err = unix.Linkat(tparent, path.Base(target), parent, base, 0)
		unix.Close(tparent)
		if err != nil {
			return fmt.Errorf("hard link %s to %s: %w", p, hdr.Linkname, err)
		}
		// A link shares its target's inode: nothing more to set.
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		kind := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[hdr.Typeflag]
		dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
		if err := unix.Mknodat(parent, base, kind|0o600, dev); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
		if err := unix.Fchownat(parent, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown %s: %w", p, err)
		}
		if err := unix.Fchmodat(parent, base, mode, 0); err != nil {
			return fmt.Errorf("chmod %s: %w", p, err)
		}
	}
	return setTimes(parent, base, hdr.AccessTime, hdr.ModTime)
}

// finishDirs sets the directories' modes and times, deepest first.
func (x *extractor) finishDirs() error {
	for i := len(x.dirs) - 1; i >= 0; i-- {
		d := x.dirs[i]
		fd, err := inRoot(x.rootfd, d.path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
			continue // replaced by a later entry
		}
		if err != nil {
			return fmt.Errorf("extract into %s: %w", x.dir, err)
		}
		err = unix.Fchmod(fd, d.mode)
		if err == nil {
			err = setTimes(fd, "", d.atime, d.mtim)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("extract into %s: set metadata of %s: %w", x.dir, d.path, err)
		}
	}
	return nil
}

// setTimes sets name's times in dirfd ("" for dirfd itself), never
// following a symlink; a zero access time takes the modification time.
func setTimes(dirfd int, name string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.UtimesNanoAt(dirfd, name, ts, flags); err != nil {
		return fmt.Errorf("set times of %s: %w", name, err)
	}
	return nil
}

// removeAt removes name in dirfd, a directory with its content.
func removeAt(dirfd int, name string, isDir bool) error {
	if !isDir {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", name, err)
		}
		return nil
	}
	r, err := os.OpenRoot(fdPath(dirfd))
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.RemoveAll(name); err != nil {
		return fmt.Errorf("remove %s: %w", name, err)
	}
	return nil
}

// mkdirAllIn opens the directory p (a container path), making it and its
// missing parents (mode 0755, root-owned, as Docker's extraction does),
// every symlink on the way resolved inside the root.
func mkdirAllIn(rootfd int, p string) (int, error) {
	fd, err := inRoot(rootfd, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		if errors.Is(err, unix.ENOTDIR) {
			return -1, fmt.Errorf("%s: a parent is not a directory: %w", p, errdefs.ErrInvalidArgument)
		}
		return fd, err
	}
	parent, err := mkdirAllIn(rootfd, path.Dir(p))
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	if err := unix.Mkdirat(parent, path.Base(p), 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir %s: %w", p, err)
	}
	// Reopened through the root: a symlink raced into its place is
	// resolved inside the root like any other.
	fd, err = inRoot(rootfd, p, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOTDIR) {
		return -1, fmt.Errorf("%s: not a directory: %w", p, errdefs.ErrInvalidArgument)
	}
	return fd, err
}
