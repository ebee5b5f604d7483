package builder

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// The build context is not extracted: reading its tar makes an index of
// its entries (names, types, modes, times, link targets, xattrs and the
// sha256 of every file) and appends the file contents to one spool file.
// Cache keys come from the index alone, so a build whose steps are all
// cached writes nothing but the spool; a COPY reads the files it copies
// from the spool. The context is written out as a tree only for what needs
// a real directory (RUN --mount=type=bind from the context), once.
//
// The tar is checked as imagestore/unpack's Plain mode checks archives: no
// absolute names, no "..", no entry through a symlink, no device node, no
// sparse file, hard links only to earlier entries.

// maxContextEntries bounds the index (about 200 bytes of memory each).
const maxContextEntries = 4 << 20

// maxSymlinks bounds the symlinks one lookup follows, as the kernel does
// (ELOOP).
const maxSymlinks = 40

// ctxNode is one inode of the context: directories hold their entries;
// hard links are names of the same node.
type ctxNode struct {
	mode   uint32 // type (S_IF*) and permission bits
	mtime  unix.Timespec
	link   string // a symlink's target
	xattrs map[string]string
	// off and size place a regular file's data in the spool; sum is its
	// sha256.
	off, size int64
	sum       [sha256.Size]byte
	kids      map[string]*ctxNode
	nlink     uint64
	ino       uint64
}

func (n *ctxNode) isDir() bool { return n.mode&unix.S_IFMT == unix.S_IFDIR }

// ctxFS is a build context read from its tar.
type ctxFS struct {
	root    *ctxNode
	spool   *os.File
	entries int
	now     unix.Timespec

	// The tree written out (materialize), once.
	diskOnce sync.Once
	diskErr  error
}

// readContext reads the build context tar r (gzip or bzip2 compressed or
// not) into an index, its file contents into a new spool file at
// spoolPath. Errors about the archive carry errdefs.ErrInvalidArgument.
func readContext(ctx context.Context, r io.Reader, spoolPath string) (_ *ctxFS, retErr error) {
	now := unix.NsecToTimespec(time.Now().UnixNano())
	c := &ctxFS{root: &ctxNode{mode: unix.S_IFDIR | 0o755, mtime: now, kids: map[string]*ctxNode{}, nlink: 1, ino: 1}, now: now, entries: 1}
	f, err := os.OpenFile(spoolPath, os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("read build context: %w", err)
	}
	c.spool = f
	defer func() {
		if retErr != nil {
			c.close()
		}
	}()
	dr, kind, err := decompress(r)
	if err != nil {
		return nil, fmt.Errorf("read build context: %w", classed{err, errdefs.ErrInvalidArgument})
	}
	br := bufio.NewReaderSize(dr, 64<<10)
	// An empty body is an empty context (a Dockerfile-less build fails
	// later, naming the Dockerfile).
	if _, err := br.Peek(1); err == io.EOF {
		return c, nil
	}
	w := &spoolWriter{w: bufio.NewWriterSize(f, 1<<20)}
	if err := c.read(ctx, br, w); err != nil {
		what := "tar"
		if kind != "" {
			what = kind + "-compressed tar"
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("read build context: %w", err)
		}
		return nil, fmt.Errorf("read build context (a %s archive is expected): %w", what, classed{err, errdefs.ErrInvalidArgument})
	}
	if err := w.w.Flush(); err != nil {
		return nil, fmt.Errorf("read build context: spool: %w", err)
	}
	return c, nil
}

// spoolWriter appends file contents to the spool, counting the offset.
type spoolWriter struct {
	w   *bufio.Writer
	off int64
}

func (c *ctxFS) close() {
	if c.spool != nil {
		c.spool.Close()
		os.Remove(c.spool.Name())
	}
}

func ctxInvalid(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}

func (c *ctxFS) read(ctx context.Context, r io.Reader, w *spoolWriter) error {
	tr := tar.NewReader(r)
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if errors.Is(err, tar.ErrHeader) || errors.Is(err, tar.ErrFieldTooLong) {
				err = fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
			}
			return fmt.Errorf("read tar: %w", err)
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		if err := c.entry(hdr, tr, w, h, buf); err != nil {
			return fmt.Errorf("unpack entry %q: %w", hdr.Name, err)
		}
	}
}

// contextName cleans a tar name as Plain archives allow them: relative,
// without "..".
func contextName(name string) (string, error) {
	if name == "" || strings.IndexByte(name, 0) >= 0 {
		return "", ctxInvalid("invalid path name")
	}
	if strings.HasPrefix(name, "/") {
		return "", ctxInvalid("absolute path %q in the archive", name)
	}
	for _, p := range strings.Split(name, "/") {
		if p == ".." {
			return "", ctxInvalid("path %q leaves the archive root (..)", name)
		}
	}
	return path.Clean(name), nil
}

func (c *ctxFS) entry(hdr *tar.Header, r io.Reader, w *spoolWriter, h interface {
	io.Writer
	Sum([]byte) []byte
	Reset()
}, buf []byte) error {
	rel, err := contextName(hdr.Name)
	if err != nil {
		return err
	}
	mtime, err := unix.TimeToTimespec(hdr.ModTime)
	if err != nil {
		mtime = unix.Timespec{}
	}
	n := &ctxNode{mode: uint32(hdr.Mode) & 0o7777, mtime: mtime, nlink: 1}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && name != "" && !strings.HasPrefix(name, "trusted.overlay.") {
			if n.xattrs == nil {
				n.xattrs = map[string]string{}
			}
			n.xattrs[name] = v
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		n.mode |= unix.S_IFDIR
		n.kids = map[string]*ctxNode{}
	case tar.TypeReg, tar.TypeRegA:
		if sparse(hdr) {
			return ctxInvalid("sparse file in the archive")
		}
		n.mode |= unix.S_IFREG
	case tar.TypeSymlink:
		if hdr.Linkname == "" {
			return ctxInvalid("symlink without a target")
		}
		n.mode |= unix.S_IFLNK
		n.link = hdr.Linkname
	case tar.TypeLink:
		return c.hardLink(rel, hdr.Linkname)
	case tar.TypeFifo:
		n.mode |= unix.S_IFIFO
	case tar.TypeChar, tar.TypeBlock:
		return ctxInvalid("device node in the archive")
	case tar.TypeGNUSparse:
		return ctxInvalid("sparse file in the archive")
	default:
		return ctxInvalid("unsupported tar entry type %q", hdr.Typeflag)
	}
	if rel == "." {
		if !n.isDir() {
			return ctxInvalid("the archive root must be a directory")
		}
		c.root.mode, c.root.mtime, c.root.xattrs = n.mode, n.mtime, n.xattrs
		return nil
	}
	parent, base, err := c.parent(rel)
	if err != nil {
		return err
	}
	if old := parent.kids[base]; old != nil && old.isDir() && n.isDir() {
		// A directory entry over a directory updates its metadata.
		old.mode, old.mtime, old.xattrs = n.mode, n.mtime, n.xattrs
		return nil
	}
	if n.mode&unix.S_IFMT == unix.S_IFREG {
		h.Reset()
		n.off = w.off
		nw, err := io.CopyBuffer(io.MultiWriter(w.w, h), r, buf)
		w.off += nw
		if err != nil {
			return fmt.Errorf("read file: %w", err)
		}
		n.size = nw
		h.Sum(n.sum[:0])
	}
	return c.add(parent, base, n)
}

// add links n into parent as base, replacing what was there.
func (c *ctxFS) add(parent *ctxNode, base string, n *ctxNode) error {
	if old := parent.kids[base]; old != nil {
		old.nlink--
	} else {
		c.entries++
		if c.entries > maxContextEntries {
			return ctxInvalid("more than %d entries in the build context", maxContextEntries)
		}
	}
	if n.ino == 0 {
		n.ino = uint64(c.entries) + 1
	}
	parent.kids[base] = n
	return nil
}

// parent finds (making implied directories) the directory that holds rel.
// As when unpacking, no symlink is followed: an entry through one is
// refused.
func (c *ctxFS) parent(rel string) (*ctxNode, string, error) {
	dir, base := path.Split(rel)
	cur := c.root
	if dir = strings.TrimSuffix(dir, "/"); dir != "" {
		for _, comp := range strings.Split(dir, "/") {
			next := cur.kids[comp]
			switch {
			case next == nil:
				next = &ctxNode{mode: unix.S_IFDIR | 0o755, mtime: c.now, kids: map[string]*ctxNode{}, nlink: 1}
				if err := c.add(cur, comp, next); err != nil {
					return nil, "", err
				}
			case next.mode&unix.S_IFMT == unix.S_IFLNK:
				return nil, "", ctxInvalid("%s: path goes through a symlink", rel)
			case !next.isDir():
				return nil, "", ctxInvalid("%s: a parent is not a directory", rel)
			}
			cur = next
		}
	}
	return cur, base, nil
}

func (c *ctxFS) hardLink(rel, linkname string) error {
	target, err := contextName(linkname)
	if err != nil {
		return fmt.Errorf("hard link target: %w", err)
	}
	if target == "." {
		return ctxInvalid("hard link to the archive root")
	}
	if target == rel {
		return nil
	}
	tdir, tbase := path.Split(target)
	cur := c.root
	if tdir = strings.TrimSuffix(tdir, "/"); tdir != "" {
		for _, comp := range strings.Split(tdir, "/") {
			next := cur.kids[comp]
			if next == nil || !next.isDir() {
				return ctxInvalid("hard link target %q is not in the archive", linkname)
			}
			cur = next
		}
	}
	t := cur.kids[tbase]
	switch {
	case t == nil:
		return ctxInvalid("hard link target %q is not in the archive", linkname)
	case t.isDir():
		return ctxInvalid("hard link to directory %q", linkname)
	}
	parent, base, err := c.parent(rel)
	if err != nil {
		return err
	}
	if parent.kids[base] == t {
		return nil
	}
	if err := c.add(parent, base, t); err != nil {
		return err
	}
	t.nlink++
	return nil
}

// sparse says whether hdr is a PAX-format sparse file.
func sparse(hdr *tar.Header) bool {
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// lookup resolves rel in the context as openat2(RESOLVE_IN_ROOT) would in
// its extracted tree: ".." stops at the root, an absolute symlink target
// starts again from it; follow resolves a final symlink too.
func (c *ctxFS) lookup(rel string, follow bool) (*ctxNode, error) {
	comps := splitPath(rel)
	cur := c.root
	var up []*ctxNode
	links := 0
	for len(comps) > 0 {
		comp := comps[0]
		comps = comps[1:]
		switch comp {
		case "", ".":
			continue
		case "..":
			if len(up) > 0 {
				cur, up = up[len(up)-1], up[:len(up)-1]
			}
			continue
		}
		if !cur.isDir() {
			return nil, ctxPathError(rel, unix.ENOTDIR)
		}
		n := cur.kids[comp]
		if n == nil {
			return nil, ctxPathError(rel, unix.ENOENT)
		}
		if n.mode&unix.S_IFMT == unix.S_IFLNK && (len(comps) > 0 || follow) {
			if links++; links > maxSymlinks {
				return nil, ctxPathError(rel, unix.ELOOP)
			}
			if strings.HasPrefix(n.link, "/") {
				cur, up = c.root, nil
			}
			comps = append(splitPath(n.link), comps...)
			continue
		}
		up = append(up, cur)
		cur = n
	}
	return cur, nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

func ctxPathError(rel string, errno unix.Errno) error {
	return &os.PathError{Op: "open", Path: "/" + strings.TrimLeft(rel, "/"), Err: errno}
}

// stat returns rel's metadata as lstat (or, with follow, stat) would give
// it in the extracted tree.
func (c *ctxFS) stat(rel string, follow bool) (unix.Stat_t, error) {
	n, err := c.lookup(rel, follow)
	if err != nil {
		return unix.Stat_t{}, err
	}
	return n.stat(), nil
}

func (n *ctxNode) stat() unix.Stat_t {
	st := unix.Stat_t{Mode: n.mode, Nlink: n.nlink, Ino: n.ino, Mtim: n.mtime, Atim: n.mtime}
	switch n.mode & unix.S_IFMT {
	case unix.S_IFREG:
		st.Size = n.size
	case unix.S_IFLNK:
		st.Size = int64(len(n.link))
	}
	return st
}

func (c *ctxFS) readlink(rel string) (string, error) {
	n, err := c.lookup(rel, false)
	if err != nil {
		return "", err
	}
	if n.mode&unix.S_IFMT != unix.S_IFLNK {
		return "", ctxPathError(rel, unix.EINVAL)
	}
	return n.link, nil
}

func (c *ctxFS) open(rel string, follow bool) (treeFile, error) {
	n, err := c.lookup(rel, follow)
	if err != nil {
		return nil, err
	}
	switch n.mode & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFLNK:
		return nil, ctxPathError(rel, unix.ELOOP)
	case unix.S_IFDIR:
		return nil, ctxPathError(rel, unix.EISDIR)
	default:
		return nil, ctxPathError(rel, unix.ENXIO)
	}
	return &ctxFile{SectionReader: io.NewSectionReader(c.spool, n.off, n.size), n: n, spool: c.spool}, nil
}

// ctxFile is a context file being read from the spool.
type ctxFile struct {
	*io.SectionReader
	n     *ctxNode
	spool *os.File
}

func (f *ctxFile) Close() error { return nil }

// WriteTo copies the file into w, in the kernel (sendfile) when w is a
// file, as io.Copy does for disk files.
func (f *ctxFile) WriteTo(w io.Writer) (int64, error) {
	out, ok := w.(*os.File)
	if !ok {
		return io.Copy(w, struct{ io.Reader }{f.SectionReader})
	}
	off, _ := f.Seek(0, io.SeekCurrent)
	start := f.n.off + off
	pos, end := start, f.n.off+f.n.size
	rc, err := out.SyscallConn()
	if err != nil {
		return 0, err
	}
	in := int(f.spool.Fd())
	var werr error
	if err := rc.Write(func(fd uintptr) bool {
		for pos < end {
			n, err := unix.Sendfile(int(fd), in, &pos, int(min(end-pos, 1<<30)))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				werr = err
				return true
			}
			if n == 0 {
				werr = io.ErrUnexpectedEOF
				return true
			}
		}
		return true
	}); err != nil {
		return pos - start, err
	}
	f.Seek(pos-f.n.off, io.SeekStart)
	return pos - start, werr
}

func (f *ctxFile) xattrs() (map[string]string, error) { return f.n.xattrs, nil }

// readFile reads a regular file of the context, symlinks resolved inside
// it, at most limit bytes.
func (c *ctxFS) readFile(rel string, limit int64) ([]byte, error) {
	n, err := c.lookup(rel, true)
	if err != nil {
		return nil, err
	}
	if n.mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file: %w", rel, errdefs.ErrInvalidArgument)
	}
	if n.size > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", rel, limit, errdefs.ErrInvalidArgument)
	}
	b := make([]byte, n.size)
	if _, err := c.spool.ReadAt(b, n.off); err != nil && !(err == io.EOF && n.size == 0) {
		return nil, fmt.Errorf("read %s from the context: %w", rel, err)
	}
	return b, nil
}

// checksum hashes what a COPY from the context copies of rel: names,
// types, modes, link targets and file contents (their sha256 from the
// index), what ignore and exclude leave out left out.
func (c *ctxFS) checksum(rel string, follow bool, ignore, exclude *patternmatcher.PatternMatcher) (digest.Digest, error) {
	top, err := c.lookup(rel, follow)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	var walk func(n *ctxNode, p, shown string)
	walk = func(n *ctxNode, p, shown string) {
		fmt.Fprintf(h, "%s\x00%o\x00", shown, n.mode)
		switch n.mode & unix.S_IFMT {
		case unix.S_IFLNK:
			fmt.Fprintf(h, "%s\x00", n.link)
		case unix.S_IFREG:
			h.Write(n.sum[:])
		case unix.S_IFDIR:
			names := make([]string, 0, len(n.kids))
			for k := range n.kids {
				names = append(names, k)
			}
			slices.Sort(names)
			for _, name := range names {
				kid := n.kids[name]
				cp := path.Join(p, name)
				if ignore != nil {
					if m, _ := ignore.MatchesOrParentMatches(cp); m && !(kid.isDir() && ignore.Exclusions()) {
						continue
					}
				}
				if exclude != nil {
					if m, _ := exclude.MatchesOrParentMatches(relTo(rel, cp)); m {
						continue
					}
				}
				walk(kid, cp, path.Join(shown, name))
			}
		}
	}
	walk(top, rel, ".")
	return digest.NewDigest(digest.SHA256, h), nil
}

// materializeContext writes the context out as a tree in ctxDir (once),
// for what needs a real directory: the files get the context's modes,
// times and xattrs, and root as owner.
func (bd *build) materializeContext(ctx context.Context) error {
	return bd.ctxfs.materialize(ctx, bd.ctxDir)
}

// materialize writes the context out as a tree in dir, which it makes
// (once; later calls return the first one's result).
func (c *ctxFS) materialize(ctx context.Context, dir string) error {
	c.diskOnce.Do(func() {
		if err := os.Mkdir(dir, 0o700); err != nil {
			c.diskErr = fmt.Errorf("write the build context out: %w", err)
			return
		}
		dfd, err := openRoot(dir)
		if err != nil {
			c.diskErr = err
			return
		}
		defer unix.Close(dfd)
		cp := &copier{ctx: ctx, src: c, dst: dfd, opts: copyOpts{}, links: map[[2]uint64]string{}}
		if err := cp.dirContents(".", ".", dfd); err != nil {
			c.diskErr = fmt.Errorf("write the build context out: %w", err)
			return
		}
		c.diskErr = unix.Fchmodat(dfd, ".", c.root.mode&0o7777, 0)
	})
	return c.diskErr
}
