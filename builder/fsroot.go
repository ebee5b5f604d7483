package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime/spec"
)

// Everything the builder does in an image's file system from berthd itself
// (COPY, ADD, WORKDIR) resolves paths the way the container would see
// them: with openat2(RESOLVE_IN_ROOT) on a descriptor of the mounted root,
// so that a symlink in the image, absolute or not, never leads outside it.

// owner is a uid:gid.
type owner struct{ uid, gid int }

// inRoot opens rel (a path inside the root dir fd refers to) with every
// symlink resolved inside that root.
func inRoot(rootfd int, rel string, flags int) (int, error) {
	rel = strings.TrimLeft(path.Clean("/"+rel), "/")
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(rootfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/" + rel, Err: err}
	}
	return fd, nil
}

func openRoot(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return fd, nil
}

// mkdirAllAt makes the directory rel and its missing parents inside the
// root (mode for new dirs, owned by own when set) and returns an O_PATH
// descriptor of it.
func mkdirAllAt(rootfd int, rel string, mode uint32, own *owner) (int, error) {
	rel = strings.TrimLeft(path.Clean("/"+rel), "/")
	cur, err := unix.Dup(rootfd)
	if err != nil {
		return -1, err
	}
	if rel == "" {
		return cur, nil
	}
	done := ""
	for _, comp := range strings.Split(rel, "/") {
		next := path.Join(done, comp)
		fd, err := inRoot(rootfd, next, unix.O_PATH|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			merr := unix.Mkdirat(cur, comp, mode)
			if merr == nil {
				// Not left to the umask.
				merr = unix.Fchmodat(cur, comp, mode, 0)
				if merr == nil && own != nil {
					merr = unix.Fchownat(cur, comp, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW)
				}
			}
			if merr != nil && !errors.Is(merr, unix.EEXIST) {
				unix.Close(cur)
				return -1, fmt.Errorf("create directory /%s: %w", next, merr)
			}
			fd, err = inRoot(rootfd, next, unix.O_PATH|unix.O_DIRECTORY)
		}
		unix.Close(cur)
		if err != nil {
			if errors.Is(err, unix.ENOTDIR) {
				return -1, fmt.Errorf("/%s: not a directory: %w", next, errdefs.ErrInvalidArgument)
			}
			return -1, err
		}
		cur, done = fd, next
	}
	return cur, nil
}

// mkdirInRoot makes the directory p inside root.
func mkdirInRoot(root, p string, mode uint32, own *owner) error {
	rfd, err := openRoot(root)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	fd, err := mkdirAllAt(rfd, p, mode, own)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// resolveUser resolves a USER ("name[:group]", numbers or names) against
// the image's /etc/passwd and /etc/group; empty is root.
func (bd *build) resolveUser(root, user string) (int, int, error) {
	if user == "" {
		return 0, 0, nil
	}
	uid, gid, _, err := spec.ResolveUser(root, user, spec.GroupsStrict)
	if err != nil {
		return 0, 0, err
	}
	return int(uid), int(gid), nil
}

// topChain is the chain ID of a list of layers' top ("" for none).
func topChain(layers []imagestore.Layer) digest.Digest {
	if len(layers) == 0 {
		return ""
	}
	return layers[len(layers)-1].ChainID
}

// onRootfs runs fn on a writable root made of lowers (the state's layers,
// or none for COPY --link), mounted under the build's dir, and commits
// what fn changed as a layer on top of s (nil when nothing changed). What
// names the step in debug timings.
func (bd *build) onRootfs(ctx context.Context, s *state, what string, lowers []imagestore.Layer, fn func(root string) error) (_ *imagestore.Layer, retErr error) {
	tm := steps.Start(ctx, "step on rootfs")
	defer tm.Log("step", what)
	snap, release := bd.b.newSnapshot()
	defer release()
	ms, err := bd.b.images.PrepareBuild(ctx, snap, lowers)
	if err != nil {
		return nil, err
	}
	tm.Done("snapshot")
	defer func() {
		if retErr != nil {
			_ = bd.b.images.RemoveSnapshot(context.WithoutCancel(ctx), snap)
		}
	}()
	target, err := bd.tmpDir("root")
	if err != nil {
		return nil, err
	}
	if err := mountAll(ms, target); err != nil {
		return nil, err
	}
	tm.Done("mount")
	ferr := fn(target)
	tm.Done("work")
	if err := unmountAll(target); err != nil {
		return nil, errors.Join(ferr, err)
	}
	os.Remove(target)
	if ferr != nil {
		return nil, ferr
	}
	tm.Done("unmount")
	l, err := bd.b.images.CommitSnapshot(ctx, bd.lease, snap, topChain(s.layers))
	tm.Done("commit")
	return l, err
}

// existsInLowers says whether rel exists in the union of lowers (topmost
// first): the topmost layer that has it, or a whiteout of it or of a
// parent, or an opaque parent, decides. A symlink on the way (which only a
// mount resolves right, inside the image) makes the answer unsure: sure is
// then false.
func existsInLowers(lowers []string, rel string) (exists, sure bool) {
	rel = strings.TrimLeft(path.Clean("/"+rel), "/")
	if rel == "" {
		return true, true
	}
	comps := strings.Split(rel, "/")
	for _, l := range lowers {
		cur := l
		for i, c := range comps {
			p := filepath.Join(cur, c)
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				break // not in this layer: look lower
			}
			switch {
			case st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0:
				return false, true // whited out here
			case i == len(comps)-1:
				return true, true
			case st.Mode&unix.S_IFMT == unix.S_IFLNK:
				return false, false
			case st.Mode&unix.S_IFMT != unix.S_IFDIR:
				return false, true // a file hides what lower layers have below
			}
			if v, _ := getxattr(p, "trusted.overlay.opaque"); v == "y" {
				// Nothing below this dir comes from lower layers: the
				// rest of the path must be in this one.
				return existsIn(p, comps[i+1:])
			}
			cur = p
		}
	}
	return false, true
}

func existsIn(dir string, comps []string) (exists, sure bool) {
	for i := range comps {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(append([]string{dir}, comps[:i+1]...)...), &st); err != nil {
			return false, true
		}
		if i < len(comps)-1 && st.Mode&unix.S_IFMT == unix.S_IFLNK {
			return false, false
		}
	}
	return true, true
}

func getxattr(p, name string) (string, error) {
	buf := make([]byte, 64)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// cleanStubs removes from a RUN step's upper dir the mount points runc had
// to create (an empty file or dir where the image had nothing), then the
// copies of directories that existed below and now hold nothing of their
// own: what remains is the step's own work.
func cleanStubs(upper string, lowers []string, targets []string) {
	for _, t := range targets {
		rel := strings.TrimLeft(path.Clean("/"+t), "/")
		if rel == "" {
			continue
		}
		comps := strings.Split(rel, "/")
		for i := len(comps); i > 0; i-- {
			p := strings.Join(comps[:i], "/")
			full := filepath.Join(upper, p)
			var st unix.Stat_t
			if unix.Lstat(full, &st) != nil {
				continue
			}
			inLower, sure := existsInLowers(lowers, p)
			if !sure {
				continue // under a symlink of the image: leave it be
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFREG:
				if st.Size == 0 && !inLower && i == len(comps) {
					os.Remove(full)
				}
			case unix.S_IFDIR:
				ents, err := os.ReadDir(full)
				if err != nil || len(ents) > 0 {
					break
				}
				if v, _ := getxattr(full, "trusted.overlay.opaque"); v == "y" {
					break
				}
				// Empty: a stub made for the mount, or a copy-up that
				// only held one (unless the step changed its owner or
				// mode).
				if inLower && !sameMeta(&st, lowerStat(lowers, p)) {
					break
				}
				os.Remove(full)
			}
		}
	}
}

// lowerStat stats rel in the topmost lower that has it.
func lowerStat(lowers []string, rel string) *unix.Stat_t {
	for _, l := range lowers {
		var st unix.Stat_t
		if unix.Lstat(filepath.Join(l, rel), &st) == nil {
			return &st
		}
	}
	return nil
}

func sameMeta(a, b *unix.Stat_t) bool {
	return b != nil && a.Mode == b.Mode && a.Uid == b.Uid && a.Gid == b.Gid
}
