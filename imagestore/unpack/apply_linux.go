// Package unpack applies one image layer (an uncompressed tar) to a directory
// in the form overlayfs wants for a lower directory: OCI whiteouts become
// overlay whiteouts (0:0 character devices) and opaque markers become the
// trusted.overlay.opaque=y xattr.
//
// The layer is untrusted. Every path is resolved with openat2(2) under
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS relative to a descriptor of the target
// directory, so the kernel itself refuses any entry that would leave it or
// go through a symlink; the final component is then created with *at calls
// that never follow a symlink. A hostile entry fails the whole Apply with an
// error naming the entry and wrapping errdefs.ErrInvalidArgument. A symlink
// with an absolute or ".." target is ordinary content (it is resolved inside
// the container at run time); it is only never followed while unpacking.
// Sparse entries are refused: their holes read as zeros, so a few KiB of
// archive would write terabytes before the caller's digest check.
// Needs Linux 5.8 (openat2, utimensat with AT_EMPTY_PATH).
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta prefixes AUFS bookkeeping entries; opaque is the only one
	// with a meaning for overlayfs.
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"

	paxXattr = "SCHILY.xattr."
	// overlayXattr names overlayfs' own attributes; a layer that carried
	// them could fake redirects or metacopy files, so they are dropped.
	overlayXattr = "trusted.overlay."
)

// Options configure Apply.
type Options struct {
	// NoChown keeps the unpacking user as owner of everything (for tests
	// and rootless use); otherwise the tar's uid/gid are applied.
	NoChown bool
	// Plain is for archives that are not layers (a build context, a tar
	// that a Dockerfile's ADD extracts): ".wh." names are ordinary files,
	// device nodes are refused, and an absolute name is an error rather
	// than a name to make relative.
	Plain bool
	// Owner, when set, owns everything instead of the tar's uid/gid (ADD
	// --chown of an archive).
	Owner *Owner
}

// Owner is a uid and gid.
type Owner struct{ UID, GID int }

// owner is who owns an entry: Options.Owner or the tar's.
func (a *applier) owner(hdr *tar.Header) (int, int) {
	if o := a.opts.Owner; o != nil {
		return o.UID, o.GID
	}
	return hdr.Uid, hdr.Gid
}

// Stats describe the directory after Apply, counted the way `du -sb` and
// `du --inodes` count it: apparent sizes (st_size, directories included)
// and inodes, each hard-linked inode once, the directory itself included.
type Stats struct {
	Bytes  int64
	Inodes int64
}

// Apply unpacks the uncompressed tar r into dir, which must exist.
// Entries are applied in order with tar semantics (a later entry replaces an
// earlier one); directory times are set after all entries are written.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return Stats{}, fmt.Errorf("open unpack dir %s: %w", dir, &os.PathError{Op: "open", Path: dir, Err: err})
	}
	a := &applier{
		dir:      dir,
		root:     root,
		opts:     opts,
		buf:      make([]byte, 256<<10),
		cacheFd:  -1,
		dirTimes: map[string]dirTime{},
	}
	defer a.close()

	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return Stats{}, fmt.Errorf("unpack into %s: %w", dir, err)
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) {
				err = fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
			}
			return Stats{}, fmt.Errorf("read layer tar: %w", err)
		}
		err = a.entry(hdr, tr)
		a.closePending()
		if err != nil {
			return Stats{}, fmt.Errorf("unpack entry %q: %w", hdr.Name, err)
		}
	}
	if err := a.finishDirs(); err != nil {
		return Stats{}, err
	}
	return Usage(dir)
}

type dirTime struct {
	atime, mtime time.Time
	order        int
}

type applier struct {
	dir  string
	root int
	opts Options
	buf  []byte

	// cacheRel/cacheFd remember the last parent directory: tar entries come
	// grouped by directory, so this saves most path walks.
	cacheRel string
	cacheFd  int
	// pending are descriptors dropped from the cache while an entry may
	// still use them; closed after the entry.
	pending []int

	dirTimes map[string]dirTime
}

func (a *applier) close() {
	a.dropCache()
	a.closePending()
	unix.Close(a.root)
}

func (a *applier) dropCache() {
	if a.cacheFd >= 0 {
		a.pending = append(a.pending, a.cacheFd)
	}
	a.cacheFd, a.cacheRel = -1, ""
}

func (a *applier) closePending() {
	for _, fd := range a.pending {
		unix.Close(fd)
	}
	a.pending = a.pending[:0]
}

func errInvalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

// cleanName turns a tar name into a clean path relative to the layer root.
// A leading "/" is dropped as tar does; anything that still climbs out is
// refused.
func cleanName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", errInvalid("invalid path name")
	}
	p := path.Clean(strings.TrimLeft(name, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errInvalid("path %q escapes the layer root", name)
	}
	return p, nil
}

// plainName is cleanName for Plain archives: an absolute name is refused
// too, and so is any ".." (even one that stays inside).
func plainName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", errInvalid("absolute path %q in the archive", name)
	}
	for _, c := range strings.Split(name, "/") {
		if c == ".." {
			return "", errInvalid("path %q leaves the archive root (..)", name)
		}
	}
	return cleanName(name)
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	}
	clean := cleanName
	if a.opts.Plain {
		clean = plainName
	}
	rel, err := clean(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return errInvalid("the layer root must be a directory")
		}
		return a.rootDir(hdr)
	}
	parentRel, base := path.Split(rel)
	parentRel = path.Clean(parentRel)

	if strings.HasPrefix(base, whiteoutPrefix) && !a.opts.Plain {
		return a.whiteout(parentRel, base)
	}
	pfd, err := a.parent(parentRel)
	if err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return a.mkdir(pfd, rel, base, hdr)
	case tar.TypeReg, tar.TypeRegA:
		if sparse(hdr) {
			// A sparse entry reads as its whole size of zeros: a few
			// bytes of archive could fill the disk, long before a
			// layer's diff ID check could fail. No image builder writes
			// them (Go's archive/tar, which docker, BuildKit, containerd
			// and buildah use, cannot), so they are refused, in layers
			// as in build contexts.
			return errInvalid("sparse file of %d bytes in the archive: sparse files are not supported", hdr.Size)
		}
		return a.file(pfd, rel, base, hdr, r)
	case tar.TypeGNUSparse:
		return errInvalid("sparse file of %d bytes in the archive (old GNU format): sparse files are not supported", hdr.Size)
	case tar.TypeSymlink:
		return a.symlink(pfd, rel, base, hdr)
	case tar.TypeLink:
		return a.link(pfd, rel, base, hdr)
	case tar.TypeChar, tar.TypeBlock:
		if a.opts.Plain {
			return errInvalid("device node in the archive")
		}
		return a.node(pfd, rel, base, hdr)
	case tar.TypeFifo:
		return a.node(pfd, rel, base, hdr)
	default:
		return errInvalid("unsupported tar entry type %q", hdr.Typeflag)
	}
}

func resolveHow(flags int) *unix.OpenHow {
	return &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
}

// classify turns the errors of a confined lookup into what they mean for a
// layer: going through a symlink or out of the root is hostile.
func classify(rel string, err error) error {
	switch {
	case errors.Is(err, unix.ELOOP):
		return fmt.Errorf("%s: path goes through a symlink: %w: %w", rel, errdefs.ErrInvalidArgument, err)
	case errors.Is(err, unix.EXDEV):
		return fmt.Errorf("%s: path escapes the layer root: %w: %w", rel, errdefs.ErrInvalidArgument, err)
	case errors.Is(err, unix.ENOTDIR):
		return fmt.Errorf("%s: a parent is not a directory: %w: %w", rel, errdefs.ErrInvalidArgument, err)
	}
	return fmt.Errorf("open %s: %w", rel, err)
}

// resolve opens rel (no symlink anywhere, final component included) under
// the root.
func (a *applier) resolve(rel string, flags int) (int, error) {
	fd, err := unix.Openat2(a.root, rel, resolveHow(flags))
	if err != nil {
		return -1, classify(rel, err)
	}
	return fd, nil
}

// parent returns an O_PATH descriptor of the directory rel, creating it and
// its parents as needed. The descriptor belongs to the cache.
func (a *applier) parent(rel string) (int, error) {
	if rel == "." {
		return a.root, nil
	}
	if a.cacheFd >= 0 && a.cacheRel == rel {
		return a.cacheFd, nil
	}
	fd, err := a.resolve(rel, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) {
		fd, err = a.mkdirAll(rel)
	}
	if err != nil {
		return -1, err
	}
	a.dropCache()
	a.cacheRel, a.cacheFd = rel, fd
	return fd, nil
}

func (a *applier) mkdirAll(rel string) (int, error) {
	cur := a.root
	for _, c := range strings.Split(rel, "/") {
		fd, err := unix.Openat2(cur, c, resolveHow(unix.O_PATH|unix.O_DIRECTORY))
		if errors.Is(err, unix.ENOENT) {
			merr := unix.Mkdirat(cur, c, 0o755)
			if merr == nil {
				// Not left to the umask: implied parents are 0755 as in
				// other unpackers. Safe to follow: just created.
				merr = unix.Fchmodat(cur, c, 0o755, 0)
			}
			if merr != nil && !errors.Is(merr, unix.EEXIST) {
				if cur != a.root {
					unix.Close(cur)
				}
				return -1, fmt.Errorf("create parent %s: %w", rel, merr)
			}
			fd, err = unix.Openat2(cur, c, resolveHow(unix.O_PATH|unix.O_DIRECTORY))
		}
		if cur != a.root {
			unix.Close(cur)
		}
		if err != nil {
			return -1, classify(rel, err)
		}
		cur = fd
	}
	return cur, nil
}

// clear removes what exists at base in pfd so that a new entry can take its
// place. An existing directory is kept when keepDir is set (a directory
// entry over a directory only updates its metadata); it reports whether a
// directory is there.
func (a *applier) clear(pfd int, rel, base string, keepDir bool) (bool, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil
		}
		return false, fmt.Errorf("stat %s: %w", rel, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return false, fmt.Errorf("replace %s: %w", rel, err)
		}
		return false, nil
	}
	if keepDir {
		return true, nil
	}
	// os.RemoveAll walks with openat(O_NOFOLLOW) and unlinkat; the
	// /proc/self/fd link pins the already-confined parent.
	if err := os.RemoveAll("/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base); err != nil {
		return false, fmt.Errorf("replace directory %s: %w", rel, err)
	}
	a.dropCache()
	for d := range a.dirTimes {
		if d == rel || strings.HasPrefix(d, rel+"/") {
			delete(a.dirTimes, d)
		}
	}
	return false, nil
}

func (a *applier) rootDir(hdr *tar.Header) error {
	fd, err := unix.Openat(a.root, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open layer root: %w", err)
	}
	defer unix.Close(fd)
	if err := a.fdMeta(fd, hdr); err != nil {
		return err
	}
	a.recordDir(".", hdr)
	return nil
}

func (a *applier) recordDir(rel string, hdr *tar.Header) {
	t := dirTime{atime: atime(hdr), mtime: hdr.ModTime, order: len(a.dirTimes)}
	if old, ok := a.dirTimes[rel]; ok {
		t.order = old.order
	}
	a.dirTimes[rel] = t
}

func (a *applier) mkdir(pfd int, rel, base string, hdr *tar.Header) error {
	isDir, err := a.clear(pfd, rel, base, true)
	if err != nil {
		return err
	}
	if !isDir {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open directory: %w", err)
	}
	defer unix.Close(fd)
	if err := a.fdMeta(fd, hdr); err != nil {
		return err
	}
	a.recordDir(rel, hdr)
	return nil
}

func (a *applier) file(pfd int, rel, base string, hdr *tar.Header, r io.Reader) error {
	if _, err := a.clear(pfd, rel, base, false); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	err = a.copy(fd, r)
	if err == nil {
		err = a.fdMeta(fd, hdr)
	}
	if cerr := unix.Close(fd); err == nil && cerr != nil {
		err = fmt.Errorf("close file: %w", cerr)
	}
	if err != nil {
		return err
	}
	return setTimes(pfd, base, hdr)
}

func (a *applier) copy(fd int, r io.Reader) error {
	for {
		n, rerr := r.Read(a.buf)
		for off := 0; off < n; {
			w, err := unix.Write(fd, a.buf[off:n])
			if err != nil {
				if errors.Is(err, unix.EINTR) {
					continue
				}
				return fmt.Errorf("write file: %w", err)
			}
			off += w
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return fmt.Errorf("read file from layer: %w", rerr)
		}
	}
}

func (a *applier) symlink(pfd int, rel, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" {
		return errInvalid("symlink without a target")
	}
	if _, err := a.clear(pfd, rel, base, false); err != nil {
		return err
	}
	if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
		return fmt.Errorf("create symlink: %w", err)
	}
	if err := a.atMeta(pfd, base, hdr, false); err != nil {
		return err
	}
	return setTimes(pfd, base, hdr)
}

func (a *applier) link(pfd int, rel, base string, hdr *tar.Header) error {
	clean := cleanName
	if a.opts.Plain {
		clean = plainName
	}
	target, err := clean(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "." {
		return errInvalid("hard link to the layer root")
	}
	if target == rel {
		return nil
	}
	tdir, tbase := path.Split(target)
	tfd := a.root
	if tdir = path.Clean(tdir); tdir != "." {
		tfd, err = a.resolve(tdir, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			return errInvalid("hard link target %q is not in the layer", hdr.Linkname)
		}
		if err != nil {
			return fmt.Errorf("hard link target: %w", err)
		}
		defer unix.Close(tfd)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(tfd, tbase, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return errInvalid("hard link target %q is not in the layer", hdr.Linkname)
		}
		return fmt.Errorf("stat hard link target: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errInvalid("hard link to directory %q", hdr.Linkname)
	}
	if _, err := a.clear(pfd, rel, base, false); err != nil {
		return err
	}
	// Flags 0: link the target itself even when it is a symlink.
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("create hard link: %w", err)
	}
	return nil
}

func (a *applier) node(pfd int, rel, base string, hdr *tar.Header) error {
	mode := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	}
	if _, err := a.clear(pfd, rel, base, false); err != nil {
		return err
	}
	dev := unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))
	if err := unix.Mknodat(pfd, base, mode|perm(hdr), int(dev)); err != nil {
		return fmt.Errorf("create device node: %w", err)
	}
	if err := a.atMeta(pfd, base, hdr, true); err != nil {
		return err
	}
	return setTimes(pfd, base, hdr)
}

func (a *applier) whiteout(parentRel, base string) error {
	if base == whiteoutOpaque {
		fd, err := a.parent(parentRel)
		if err != nil {
			return err
		}
		dfd, err := unix.Openat(fd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open opaque directory: %w", err)
		}
		defer unix.Close(dfd)
		if err := unix.Fsetxattr(dfd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark directory opaque: %w", err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return errInvalid("whiteout of %q", name)
	}
	pfd, err := a.parent(parentRel)
	if err != nil {
		return err
	}
	rel := path.Join(parentRel, name)
	if _, err := a.clear(pfd, rel, name, false); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("create whiteout: %w", err)
	}
	return nil
}

// sparse says whether hdr is a PAX-format sparse file (any of GNU's 0.0,
// 0.1 and 1.0 encodings; archive/tar reports them as regular files of
// their expanded size).
func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func perm(hdr *tar.Header) uint32 { return uint32(hdr.Mode) & 0o7777 }

func atime(hdr *tar.Header) time.Time {
	if hdr.AccessTime.IsZero() {
		return hdr.ModTime
	}
	return hdr.AccessTime
}

// fdMeta sets owner, mode and xattrs through an open descriptor. The mode is
// set after the owner because chown clears set-id bits.
func (a *applier) fdMeta(fd int, hdr *tar.Header) error {
	if !a.opts.NoChown {
		uid, gid := a.owner(hdr)
		if err := unix.Fchown(fd, uid, gid); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(fd, perm(hdr)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	for name, value := range xattrs(hdr) {
		if err := unix.Fsetxattr(fd, name, []byte(value), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// atMeta is fdMeta for symlinks and device nodes, which cannot be opened
// for writing: it works on the name in its confined parent without
// following it.
func (a *applier) atMeta(pfd int, base string, hdr *tar.Header, chmod bool) error {
	if !a.opts.NoChown {
		uid, gid := a.owner(hdr)
		if err := unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if chmod {
		// Safe to follow: the node was just created by mknodat and is no
		// symlink.
		if err := unix.Fchmodat(pfd, base, perm(hdr), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	for name, value := range xattrs(hdr) {
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		if err := unix.Lsetxattr(p, name, []byte(value), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

func xattrs(hdr *tar.Header) map[string]string {
	var out map[string]string
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattr)
		if !ok || name == "" || strings.HasPrefix(name, overlayXattr) {
			continue
		}
		if out == nil {
			out = map[string]string{}
		}
		out[name] = v
	}
	return out
}

func timespecs(at, mt time.Time) []unix.Timespec {
	ts := make([]unix.Timespec, 2)
	for i, t := range []time.Time{at, mt} {
		s, err := unix.TimeToTimespec(t)
		if err != nil {
			s = unix.Timespec{}
		}
		ts[i] = s
	}
	return ts
}

func setTimes(pfd int, base string, hdr *tar.Header) error {
	if err := unix.UtimesNanoAt(pfd, base, timespecs(atime(hdr), hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// finishDirs sets directory times last: writing an entry changes the mtime
// of its parent.
func (a *applier) finishDirs() error {
	for rel, t := range a.dirTimes {
		ts := timespecs(t.atime, t.mtime)
		if rel == "." {
			if err := unix.UtimesNano(a.dir, ts); err != nil {
				return fmt.Errorf("set times of layer root: %w", err)
			}
			continue
		}
		// Resolved afresh and never created: making a missing parent now
		// would change the times of a directory already done.
		fd, err := a.resolve(rel, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return fmt.Errorf("set times of %s: %w", rel, err)
		}
		err = unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("set times of %s: %w", rel, err)
		}
	}
	return nil
}

// Usage counts dir the way `du -sb` (apparent bytes) and `du --inodes` do:
// every inode once, directories and dir itself included.
func Usage(dir string) (Stats, error) {
	type key struct{ dev, ino uint64 }
	seen := map[key]struct{}{}
	var s Stats
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stat %s: no inode information", p)
		}
		if st.Nlink > 1 && !info.IsDir() {
			k := key{uint64(st.Dev), st.Ino}
			if _, dup := seen[k]; dup {
				return nil
			}
			seen[k] = struct{}{}
		}
		s.Bytes += st.Size
		s.Inodes++
		return nil
	})
	if err != nil {
		return Stats{}, fmt.Errorf("measure %s: %w", dir, err)
	}
	return s, nil
}
