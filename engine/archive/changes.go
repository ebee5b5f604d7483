package archive

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"syscall"
	"time"

	"github.com/moby/moby/api/types/container"
	"golang.org/x/sys/unix"
)

// Changes lists what the overlay upper directory upper changed over the
// lower directories lowers (topmost first), as Docker's overlay2 driver
// reports them for `docker diff`: a whiteout (a 0:0 character device) or
// an opaque directory is a deletion; a path that exists in a lower layer
// is a modification, except a directory whose size, mode and mtime did
// not change (it is only there because something below it changed);
// anything else is an addition; and the parent of an addition or deletion
// is reported as modified once. Paths come in walk (lexical) order.
//
// The paths in ignore (container paths) are left out as if they were not
// in upper: the mount points a runtime creates (Docker keeps those in an
// init layer under the container's), and a directory that holds nothing
// else is no change either.
func Changes(upper string, lowers []string, ignore []string) ([]container.FilesystemChange, error) {
	var changes []container.FilesystemChange
	changedDirs := map[string]bool{}
	skip := map[string]bool{}
	for _, p := range ignore {
		skip[cleanPath(p)] = true
	}
	err := filepath.WalkDir(upper, func(hostPath string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		r, err := filepath.Rel(upper, hostPath)
		if err != nil {
			return err
		}
		p := cleanPath(filepath.ToSlash(r))
		if p == "/" || skip[p] {
			return nil
		}
		if d.IsDir() && len(skip) > 0 && onlyIgnored(hostPath, p, skip) && existsIn(lowers, r) {
			return fs.SkipDir
		}
		fi, err := d.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		kind := container.ChangeAdd
		deleted, err := whiteout(hostPath, fi)
		if err != nil {
			return err
		}
		if deleted {
			kind = container.ChangeDelete
		} else {
			for _, l := range lowers {
				lfi, err := os.Stat(filepath.Join(l, r))
				if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
					continue
				}
				if err != nil {
					return err
				}
				if lfi.IsDir() && fi.IsDir() && lfi.Size() == fi.Size() && lfi.Mode() == fi.Mode() && sameFsTime(lfi.ModTime(), fi.ModTime()) {
					// Only a parent of a change.
					return nil
				}
				kind = container.ChangeModify
				break
			}
		}
		if fi.IsDir() {
			changedDirs[p] = true
		}
		if kind == container.ChangeAdd || kind == container.ChangeDelete {
			if parent := path.Dir(p); parent != "/" && !changedDirs[parent] {
				changes = append(changes, container.FilesystemChange{Path: parent, Kind: container.ChangeModify})
				changedDirs[parent] = true
			}
		}
		changes = append(changes, container.FilesystemChange{Path: p, Kind: kind})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("changes in %s: %w", upper, err)
	}
	return changes, nil
}

// onlyIgnored tells whether the upper directory at hostPath (container
// path p) holds nothing but ignored paths, at any depth.
func onlyIgnored(hostPath, p string, skip map[string]bool) bool {
	ents, err := os.ReadDir(hostPath)
	if err != nil {
		return false
	}
	for _, e := range ents {
		cp := path.Join(p, e.Name())
		if skip[cp] {
			continue
		}
		if !e.IsDir() || !onlyIgnored(filepath.Join(hostPath, e.Name()), cp, skip) {
			return false
		}
	}
	return true
}

func existsIn(lowers []string, r string) bool {
	for _, l := range lowers {
		if _, err := os.Lstat(filepath.Join(l, r)); err == nil {
			return true
		}
	}
	return false
}

// whiteout tells whether an upper dir entry marks a deletion: overlay's
// 0:0 character device, or a directory made opaque (its lower content
// deleted), as Docker's overlay2 differ reads them.
func whiteout(hostPath string, fi fs.FileInfo) (bool, error) {
	if fi.Mode()&fs.ModeCharDevice != 0 {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Rdev == 0 {
			return true, nil
		}
	}
	if fi.IsDir() {
		buf := make([]byte, 2)
		n, err := unix.Lgetxattr(hostPath, "trusted.overlay.opaque", buf)
		if errors.Is(err, unix.ENODATA) || errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ERANGE) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("read opaque marker of %s: %w", hostPath, err)
		}
		return n == 1 && buf[0] == 'y', nil
	}
	return false, nil
}

// sameFsTime compares times as Docker does: exactly, or to the second when
// either has no sub-second part (tar keeps seconds only).
func sameFsTime(a, b time.Time) bool {
	return a.Equal(b) || (a.Unix() == b.Unix() && (a.Nanosecond() == 0 || b.Nanosecond() == 0))
}
