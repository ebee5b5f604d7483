package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

// Usage reports the bytes and inodes the store occupies, counted as
// `du -sxb` and `du -sx --inodes` count them: apparent sizes of every file,
// directory and symlink, hard links once, on the root's filesystem only.
// The root also holds the mount points of running containers' rootfs
// (overlays of these same layers) and pods' /dev/shm: counting them would
// count the layers again, once per running container.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	root, err := filepath.EvalSymlinks(s.cfg.Root)
	if err != nil {
		return Usage{}, fmt.Errorf("image store usage: %w", err)
	}
	var rootSt syscall.Stat_t
	if err := syscall.Stat(root, &rootSt); err != nil {
		return Usage{}, fmt.Errorf("image store usage: %w", err)
	}
	u := Usage{}
	type inode struct{ dev, ino uint64 }
	seen := map[inode]bool{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			// Pulls and GC change the tree while we walk it.
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("stat %s: no unix stat", path)
		}
		if st.Dev != rootSt.Dev {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if st.Nlink > 1 && !fi.IsDir() {
			k := inode{uint64(st.Dev), st.Ino}
			if seen[k] {
				return nil
			}
			seen[k] = true
		}
		u.Inodes++
		u.Bytes += uint64(st.Size)
		return nil
	})
	if err != nil {
		return Usage{}, fmt.Errorf("image store usage: %w", err)
	}
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return Usage{}, fmt.Errorf("image store usage: read mounts: %w", err)
	}
	for _, m := range mounts {
		mp := m.Mountpoint
		if (root == mp || strings.HasPrefix(root, strings.TrimSuffix(mp, "/")+"/")) && len(mp) > len(u.Mountpoint) {
			u.Mountpoint = mp
		}
	}
	return u, nil
}
