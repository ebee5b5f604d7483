// Package diff writes the changes held in an overlayfs upper directory as an
// OCI layer tar: the inverse of imagestore/unpack. Overlay whiteouts (0:0
// character devices) become ".wh.<name>" entries and opaque directories
// (trusted.overlay.opaque=y) get a ".wh..wh..opq" entry right after their
// own, before their children, as docker's overlay2 differ writes them.
//
// The upper dir must come from a snapshot mounted with redirect_dir and
// metacopy off (snapshot.PrepareDiffable): then every changed file is in it
// whole and nothing refers to the lower dirs. The walk is in lexical order
// and times are kept to the second, so the same tree always gives the same
// tar (and diff ID). Sockets cannot be represented in a tar and are left
// out, as docker does.
package diff

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
	overlayXattr   = "trusted.overlay."
	opaqueXattr    = "trusted.overlay.opaque"
	paxXattr       = "SCHILY.xattr."
)

// Options configure Write.
type Options struct {
	// Clean removes overlay's own xattrs (origin, impure, ...) from the
	// files it writes, all but the opaque marker, so that the directory
	// can serve as a lower dir afterwards: a stale origin or redirect is
	// meaningless, or worse, in another overlay.
	Clean bool
}

// Stats say what Write wrote.
type Stats struct {
	// Entries is the number of tar entries (0: the upper dir held no
	// change).
	Entries int
}

type inode struct{ dev, ino uint64 }

type writer struct {
	ctx   context.Context
	root  string
	tw    *tar.Writer
	opts  Options
	links map[inode]string
	stats Stats
	buf   []byte
}

// Write writes the changes in upper (an overlay upper dir) to w as an
// uncompressed tar and closes the tar (end marker included).
func Write(ctx context.Context, upper string, w io.Writer, opts Options) (Stats, error) {
	dw := &writer{ctx: ctx, root: upper, tw: tar.NewWriter(w), opts: opts, links: map[inode]string{}, buf: make([]byte, 256<<10)}
	if err := dw.dir(""); err != nil {
		return dw.stats, fmt.Errorf("write diff of %s: %w", upper, err)
	}
	if err := dw.tw.Close(); err != nil {
		return dw.stats, fmt.Errorf("write diff of %s: %w", upper, err)
	}
	return dw.stats, nil
}

// dir writes the entries of the directory rel (relative to the root, ""
// for the root itself), recursively, in lexical order.
func (w *writer) dir(rel string) error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	ents, err := os.ReadDir(filepath.Join(w.root, rel))
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := w.entry(path.Join(rel, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) entry(rel string) error {
	full := filepath.Join(w.root, rel)
	var st unix.Stat_t
	if err := unix.Lstat(full, &st); err != nil {
		return fmt.Errorf("stat %s: %w", rel, err)
	}
	mtime := time.Unix(st.Mtim.Sec, 0)
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: mtime,
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		if st.Rdev == 0 {
			return w.write(&tar.Header{
				Name:     path.Join(path.Dir(rel), whiteoutPrefix+path.Base(rel)),
				Typeflag: tar.TypeReg,
				ModTime:  mtime,
				Format:   tar.FormatPAX,
			}, nil)
		}
		hdr.Typeflag = tar.TypeChar
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	case unix.S_IFSOCK:
		return nil
	case unix.S_IFLNK:
		target, err := os.Readlink(full)
		if err != nil {
			return fmt.Errorf("read link %s: %w", rel, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		opaque, err := w.xattrs(full, hdr, true)
		if err != nil {
			return err
		}
		if err := w.write(hdr, nil); err != nil {
			return err
		}
		if opaque {
			if err := w.write(&tar.Header{Name: path.Join(rel, whiteoutOpaque), Typeflag: tar.TypeReg, ModTime: mtime, Format: tar.FormatPAX}, nil); err != nil {
				return err
			}
		}
		return w.dir(rel)
	case unix.S_IFREG:
		if st.Nlink > 1 {
			id := inode{dev: st.Dev, ino: st.Ino}
			if first, ok := w.links[id]; ok {
				hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
				return w.write(hdr, nil)
			}
			w.links[id] = rel
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	default:
		return fmt.Errorf("%s: unsupported file type %#o: %w", rel, st.Mode&unix.S_IFMT, errdefs.ErrNotImplemented)
	}
	if _, err := w.xattrs(full, hdr, false); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeReg {
		return w.write(hdr, nil)
	}
	f, err := os.OpenFile(full, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", rel, err)
	}
	defer f.Close()
	return w.write(hdr, f)
}

// xattrs copies path's extended attributes into hdr, leaving out (and with
// Clean removing) overlay's own; it reports whether a directory is opaque.
func (w *writer) xattrs(p string, hdr *tar.Header, dir bool) (opaque bool, _ error) {
	names, err := listXattrs(p)
	if err != nil {
		return false, err
	}
	for _, n := range names {
		if strings.HasPrefix(n, overlayXattr) {
			if dir && n == opaqueXattr {
				v, err := getXattr(p, n)
				if err != nil {
					return false, err
				}
				if string(v) == "y" {
					opaque = true
					continue
				}
			}
			if w.opts.Clean {
				if err := unix.Lremovexattr(p, n); err != nil && !errors.Is(err, unix.ENODATA) {
					return false, fmt.Errorf("remove xattr %s of %s: %w", n, hdr.Name, err)
				}
			}
			continue
		}
		v, err := getXattr(p, n)
		if err != nil {
			return false, err
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = map[string]string{}
		}
		hdr.PAXRecords[paxXattr+n] = string(v)
	}
	return opaque, nil
}

func (w *writer) write(hdr *tar.Header, r io.Reader) error {
	if err := w.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write %s: %w", hdr.Name, err)
	}
	w.stats.Entries++
	if r == nil {
		return nil
	}
	n, err := io.CopyBuffer(w.tw, r, w.buf)
	if err != nil {
		return fmt.Errorf("write %s: %w", hdr.Name, err)
	}
	if n != hdr.Size {
		return fmt.Errorf("write %s: %w: changed while being written (%d of %d bytes)", hdr.Name, errdefs.ErrFailedPrecondition, n, hdr.Size)
	}
	return nil
}

func listXattrs(p string) ([]string, error) {
	buf := make([]byte, 1024)
	for {
		n, err := unix.Llistxattr(p, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("list xattrs of %s: %w", p, err)
		}
		var out []string
		for _, s := range strings.Split(string(buf[:n]), "\x00") {
			if s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	}
}

func getXattr(p, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read xattr %s of %s: %w", name, p, err)
		}
		return buf[:n], nil
	}
}
