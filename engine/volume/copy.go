package volume

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// CopyUp copies the tree at src (an image's content at a volume's mount
// point, seen through the container's root filesystem) into dst (the
// volume's data) when dst is empty, as Docker does on a volume's first
// mount: files, directories, symlinks, device nodes and fifos, with their
// modes, owners and times; dst takes src's mode and owner. A missing src,
// or one that is not a directory, copies nothing. It reports whether it
// copied.
func CopyUp(src, dst string) (bool, error) {
	fi, err := os.Lstat(src)
	if errors.Is(err, os.ErrNotExist) || (err == nil && !fi.IsDir()) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("copy image content into volume: %w", err)
	}
	ents, err := os.ReadDir(dst)
	if err != nil {
		return false, fmt.Errorf("copy image content into volume: %w", err)
	}
	if len(ents) > 0 {
		return false, nil
	}
	if err := copyTree(src, dst); err != nil {
		return false, fmt.Errorf("copy image content into volume: %w", err)
	}
	if err := copyAttrs(src, dst, fi); err != nil {
		return false, fmt.Errorf("copy image content into volume: %w", err)
	}
	return true, nil
}

func copyTree(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		fi, err := os.Lstat(s)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		switch m := fi.Mode(); {
		case m.IsDir():
			if err := os.Mkdir(d, 0o700); err != nil {
				return err
			}
			if err := copyTree(s, d); err != nil {
				return err
			}
		case m.IsRegular():
			if err := copyFile(s, d); err != nil {
				return err
			}
		case m&os.ModeSymlink != 0:
			target, err := os.Readlink(s)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, d); err != nil {
				return err
			}
			if err := unix.Lchown(d, int(st.Uid), int(st.Gid)); err != nil {
				return err
			}
			continue
		case m&(os.ModeDevice|os.ModeNamedPipe|os.ModeCharDevice) != 0:
			if err := unix.Mknod(d, st.Mode, int(st.Rdev)); err != nil {
				return err
			}
		default:
			// Sockets and the like are not content.
			continue
		}
		if err := copyAttrs(s, d, fi); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// copyAttrs gives dst src's owner, mode (with setuid/setgid/sticky) and
// times.
func copyAttrs(_, dst string, fi os.FileInfo) error {
	st := fi.Sys().(*syscall.Stat_t)
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return err
	}
	ts := []unix.Timespec{{Sec: st.Atim.Sec, Nsec: st.Atim.Nsec}, {Sec: st.Mtim.Sec, Nsec: st.Mtim.Nsec}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	return nil
}
