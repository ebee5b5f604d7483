package archive

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
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Source is a container path opened for GET archive: its Stat goes into
// the response's header before WriteTo writes the tar.
type Source struct {
	Stat container.PathStat
	// root holds the top entry; top is its name there ("." for root
	// itself), name its name in the tar.
	root *os.Root
	top  string
	name string
}

// Open opens the container path p under root as Docker's GET archive
// does: the directory part resolved inside the root, the last element
// taken as it is (a symlink is archived as the link); a path ending in
// "/" or "/." archives the directory it resolves to. The tar's entries
// are named after p's last element: "etc/", "etc/passwd", ...; "./..."
// for a path ending in "/.". Close it when done.
func Open(root, p string) (*Source, error) {
	rootfd, err := openRoot(root)
	if err != nil {
		return nil, err
	}
	defer unix.Close(rootfd)
	dir, base := splitPath(p)
	dirfd, err := inRoot(rootfd, dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, notFound(p, err)
	}
	defer unix.Close(dirfd)
	st, err := statAt(root, dirfd, p, base)
	if err != nil {
		return nil, err
	}
	s := &Source{Stat: st, top: ".", name: tarName(p)}
	if base != "" && !st.Mode.IsDir() {
		s.top = base
	} else if base != "" {
		// A directory: it becomes the root, so that nothing is looked up
		// by name again.
		fd, err := unix.Openat(dirfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, notFound(p, &os.PathError{Op: "open", Path: p, Err: err})
		}
		defer unix.Close(fd)
		dirfd = fd
	}
	if s.root, err = os.OpenRoot(fdPath(dirfd)); err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	return s, nil
}

// tarName is the top entry's name as Docker rebases it:
// filepath.Base of the path with its trailing "/." kept.
func tarName(p string) string {
	if p == "" {
		p = "/"
	}
	if strings.HasSuffix(p, "/.") || p == "." {
		return "."
	}
	return filepath.Base(cleanPath(p))
}

// WriteTo writes the tar and its end marker to w.
func (s *Source) WriteTo(ctx context.Context, w io.Writer) error {
	tw := &tarWalker{ctx: ctx, tw: tar.NewWriter(w), root: s.root, links: map[inode]string{}, buf: make([]byte, 128<<10)}
	if err := tw.walk(s.top, s.name); err != nil {
		return err
	}
	return tw.tw.Close()
}

// Close releases the source.
func (s *Source) Close() error {
	return s.root.Close()
}

// Export writes the whole tree under root as a tar (docker export):
// entries are named relative to the root ("bin/", "bin/sh", ...), the
// root itself has none.
func Export(ctx context.Context, root string, w io.Writer) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return fmt.Errorf("export %s: %w", root, err)
	}
	defer r.Close()
	tw := &tarWalker{ctx: ctx, tw: tar.NewWriter(w), root: r, links: map[inode]string{}, buf: make([]byte, 128<<10)}
	if err := tw.children(".", ""); err != nil {
		return err
	}
	return tw.tw.Close()
}

type inode struct{ dev, ino uint64 }

// tarWalker writes a tree it reads through an os.Root: a symlink swapped
// in by the container while it walks can only lead inside the root (the
// walk never follows one itself).
type tarWalker struct {
	ctx   context.Context
	tw    *tar.Writer
	root  *os.Root
	links map[inode]string
	buf   []byte
}

// walk writes the entry rel (in the root) under name, and below it for a
// directory.
func (t *tarWalker) walk(rel, name string) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	fi, err := t.root.Lstat(rel)
	if errors.Is(err, fs.ErrNotExist) && rel != "." {
		return nil // removed while we walk
	}
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if err := t.entry(rel, name, fi); err != nil {
		return err
	}
	if fi.IsDir() {
		return t.children(rel, name)
	}
	return nil
}

func (t *tarWalker) children(rel, name string) error {
	d, err := t.root.Open(rel)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) && rel != "." {
			return nil
		}
		return fmt.Errorf("archive %s: %w", name, err)
	}
	ents, err := d.ReadDir(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	slices.SortFunc(ents, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	for _, e := range ents {
		if err := t.walk(path.Join(rel, e.Name()), path.Join(name, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// entry writes one header, and a regular file's content.
func (t *tarWalker) entry(rel, name string, fi fs.FileInfo) error {
	if fi.Mode()&fs.ModeSocket != 0 {
		return nil // a tar cannot hold one; Docker leaves them out too
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		var err error
		if link, err = t.root.Readlink(rel); err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	hdr.Name = name
	if fi.IsDir() && !strings.HasSuffix(name, "/") {
		hdr.Name += "/"
	}
	// The host's user and group names mean nothing in the container.
	hdr.Uname, hdr.Gname = "", ""
	hdr.ModTime = hdr.ModTime.Truncate(1e9)
	hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && fi.Mode().IsRegular() && st.Nlink > 1 {
		ino := inode{uint64(st.Dev), st.Ino}
		if first, ok := t.links[ino]; ok {
			hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			return t.writeHeader(hdr)
		}
		t.links[ino] = name
	}
	if !fi.Mode().IsRegular() {
		return t.writeHeader(hdr)
	}
	f, err := t.root.OpenFile(rel, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("archive %s: %w", name, err)
	}
	defer f.Close()
	// The file may have changed since the Lstat: the header says what is
	// written, never more than was announced.
	cur, err := f.Stat()
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if !cur.Mode().IsRegular() {
		return nil
	}
	if err := t.writeHeader(hdr); err != nil {
		return err
	}
	n, err := io.CopyBuffer(t.tw, io.LimitReader(f, hdr.Size), t.buf)
	if err != nil {
		return fmt.Errorf("archive %s: %w", name, err)
	}
	if n < hdr.Size {
		// Truncated while we read: pad with zeros, as GNU tar does.
		if _, err := io.CopyBuffer(t.tw, io.LimitReader(zeros{}, hdr.Size-n), t.buf); err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
	}
	return nil
}

func (t *tarWalker) writeHeader(hdr *tar.Header) error {
	if err := t.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive %s: %w", hdr.Name, err)
	}
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
