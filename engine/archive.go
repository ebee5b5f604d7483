package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/mount"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/engine/archive"
	"github.com/berth-dev/berth/runtime/spec"
)

// The archive endpoints (docker cp) work on the container's file system
// as its processes see it, running or not: its rootfs with its volumes
// and bind mounts at their destinations (tmpfs mounts, which hold nothing
// outside a running container, are left out, as dockerd does). That view
// is built in a mount namespace of its own, on a thread that lives for
// one operation: nothing is mounted in berthd's namespace, so nothing can
// leak, even when berthd is killed in the middle.

// ArchiveStat stats a path in the container (HEAD archive).
func (e *Engine) ArchiveStat(ctx context.Context, ref, path string) (container.PathStat, error) {
	c, err := e.lookup(ref)
	if err != nil {
		return container.PathStat{}, err
	}
	var st container.PathStat
	err = e.inView(c, viewOptions{}, func(root string) error {
		var err error
		st, err = archive.Stat(root, path)
		return err
	})
	return st, cpError(err, path, ref)
}

// ArchiveGet writes a path of the container as a tar (GET archive):
// begin is called with the path's stat before the first byte, so that
// the header carries it, or not at all when the path cannot be read.
func (e *Engine) ArchiveGet(ctx context.Context, ref, path string, begin func(container.PathStat) (io.Writer, error)) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	err = e.inView(c, viewOptions{}, func(root string) error {
		src, err := archive.Open(root, path)
		if err != nil {
			return err
		}
		defer src.Close()
		w, err := begin(src.Stat)
		if err != nil {
			return err
		}
		return src.WriteTo(ctx, w)
	})
	if err == nil {
		e.log(c, events.ActionArchivePath, map[string]string{"path": path})
	}
	return cpError(err, path, ref)
}

// ArchivePutOptions are PUT archive's query options.
type ArchivePutOptions struct {
	NoOverwriteDirNonDir bool
	// CopyUIDGID gives everything extracted the container's user, if it
	// has one (otherwise the tar's owners stay, as without it).
	CopyUIDGID bool
}

// ArchivePut extracts the tar r into the directory path of the container
// (PUT archive). The rootfs of a --read-only container and read-only
// volumes refuse it, as in dockerd.
func (e *Engine) ArchivePut(ctx context.Context, ref, path string, r io.Reader, o ArchivePutOptions) error {
	c, err := e.lookup(ref)
	if err != nil {
		return err
	}
	e.mu.Lock()
	user := c.rec.Config.User
	readOnly := c.rec.HostConfig.ReadonlyRootfs
	e.mu.Unlock()
	err = e.inView(c, viewOptions{writable: true}, func(root string) error {
		xo := archive.ExtractOptions{NoOverwriteDirNonDir: o.NoOverwriteDirNonDir}
		// As dockerd (tarCopyOptions): copyUIDGID means the container's
		// user only when it has one; without, the tar's owners stay,
		// which is how compose v5 gives a secret or config its uid and
		// gid.
		if o.CopyUIDGID && user != "" {
			uid, gid, _, err := spec.ResolveUser(root, user, spec.GroupsStrict)
			if err != nil {
				return err
			}
			xo.Owner = &archive.Owner{UID: int(uid), GID: int(gid)}
		}
		return archive.Extract(ctx, root, path, r, xo)
	})
	if errors.Is(err, unix.EROFS) {
		if readOnly && !e.inVolume(c, path) {
			return errdefs.ErrPermissionDenied.WithMessage("container rootfs is marked read-only")
		}
		return errdefs.ErrPermissionDenied.WithMessage("mounted volume is marked read-only")
	}
	if err == nil {
		e.log(c, events.ActionExtractToDir, map[string]string{"path": path})
	}
	return cpError(err, path, ref)
}

// inVolume tells whether a container path lies in one of its mounts.
func (e *Engine) inVolume(c *ctr, p string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	p = filepath.Clean("/" + p)
	for _, m := range c.rec.Mounts {
		if p == m.Destination || strings.HasPrefix(p, strings.TrimSuffix(m.Destination, "/")+"/") {
			return true
		}
	}
	return false
}

// cpError words a missing path as dockerd does.
func cpError(err error, path, ref string) error {
	if err != nil && errdefs.IsNotFound(err) {
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("Could not find the file %s in container %s", path, ref))
	}
	return err
}

type viewOptions struct {
	// writable: the operation writes; the rootfs of a --read-only
	// container is then read-only in the view, as in the container.
	writable bool
}

// inView runs fn with the container's file system view at root, on a
// thread of its own in a private mount namespace that dies with it.
func (e *Engine) inView(c *ctr, o viewOptions, fn func(root string) error) error {
	e.mu.Lock()
	id := c.rec.ID
	readOnly := c.rec.HostConfig.ReadonlyRootfs
	mps := slices.Clone(c.rec.clone().Mounts)
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return fmt.Errorf("container %s: %w", id, err)
	}
	if rc.Bundle == "" {
		return fmt.Errorf("container %s has no file system: %w", id, errdefs.ErrFailedPrecondition)
	}
	root := filepath.Join(rc.Bundle, "rootfs")
	done := make(chan error, 1)
	go func() {
		// The thread is never unlocked: it exits with this goroutine and
		// takes the namespace and its mounts along.
		goruntime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- fmt.Errorf("file system view of container %s: unshare: %w", id, err)
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- fmt.Errorf("file system view of container %s: make mounts private: %w", id, err)
			return
		}
		if err := buildView(root, mps, readOnly && o.writable); err != nil {
			done <- fmt.Errorf("file system view of container %s: %w", id, err)
			return
		}
		done <- fn(root)
	}()
	return <-done
}

// buildView mounts the container's volumes and binds over its rootfs, in
// the calling thread's private mount namespace.
func buildView(root string, mps []MountPoint, readOnlyRoot bool) error {
	// Parents before children.
	slices.SortStableFunc(mps, func(a, b MountPoint) int {
		return strings.Count(filepath.Clean(a.Destination), "/") - strings.Count(filepath.Clean(b.Destination), "/")
	})
	for _, mp := range mps {
		if mp.Type != mount.TypeBind && mp.Type != mount.TypeVolume {
			continue
		}
		src := mp.Source
		if mp.Subpath != "" {
			src = filepath.Join(src, mp.Subpath)
		}
		var st unix.Stat_t
		if err := unix.Stat(src, &st); err != nil {
			// A bind source that went away: the container would not start
			// either; its path is left as the rootfs has it.
			continue
		}
		isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
		target, err := archive.MountTarget(root, mp.Destination, isDir)
		if err != nil {
			return err
		}
		flags := uintptr(unix.MS_BIND | unix.MS_REC)
		if mp.NonRecursive {
			flags = unix.MS_BIND
		}
		err = unix.Mount(src, archive.FdPath(target), "", flags, "")
		target.Close()
		if err != nil {
			return fmt.Errorf("mount %s on %s: %w", src, mp.Destination, err)
		}
		if !mp.RW {
			// Opened again: the path now leads to the new mount.
			if err := remountReadOnly(root, mp.Destination, isDir); err != nil {
				return err
			}
		}
	}
	// The rootfs is a mount point of its own (the runtime's overlay);
	// bound onto itself, with the volumes above, it is made read-only
	// here alone.
	if readOnlyRoot {
		if err := unix.Mount(root, root, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind rootfs: %w", err)
		}
		if err := unix.Mount("", root, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("rootfs read-only: %w", err)
		}
	}
	return nil
}

func remountReadOnly(root, dest string, isDir bool) error {
	t, err := archive.MountTarget(root, dest, isDir)
	if err != nil {
		return err
	}
	defer t.Close()
	if err := unix.Mount("", archive.FdPath(t), "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		return fmt.Errorf("mount %s read-only: %w", dest, err)
	}
	return nil
}
