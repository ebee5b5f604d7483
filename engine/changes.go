package engine

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/engine/archive"
	"github.com/berth-dev/berth/runtime"
)

// Changes lists what the container changed in its file system (docker
// diff): its writable layer read against the image's layers.
func (e *Engine) Changes(ctx context.Context, ref string) ([]container.FilesystemChange, error) {
	c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	id := c.rec.ID
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", id, err)
	}
	upper, lowers, ok := layersOf(rc.Config.Rootfs)
	if !ok {
		return nil, fmt.Errorf("changes of container %s: its root file system is not an overlay: %w", id, errdefs.ErrNotImplemented)
	}
	changes, err := archive.Changes(upper, lowers, runtimeMountpoints)
	if err != nil {
		return nil, fmt.Errorf("changes of container %s: %w", id, err)
	}
	if changes == nil {
		changes = []container.FilesystemChange{}
	}
	return changes, nil
}

// runtimeMountpoints are the paths the runtime may create in the
// writable layer to mount on, which dockerd keeps in the container's init
// layer, out of docker diff.
var runtimeMountpoints = []string{"/dev", "/dev/pts", "/dev/shm", "/dev/console", "/proc", "/sys",
	"/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab", "/.dockerenv"}

// layersOf reads the upper and lower directories of a rootfs as the image
// store mounts it: one overlay, or the bind of an upper dir alone for an
// image without layers.
func layersOf(ms []runtime.Mount) (upper string, lowers []string, ok bool) {
	if len(ms) != 1 {
		return "", nil, false
	}
	m := ms[0]
	switch m.Type {
	case "overlay":
		for _, o := range m.Options {
			if v, found := strings.CutPrefix(o, "upperdir="); found {
				upper = v
			}
			if v, found := strings.CutPrefix(o, "lowerdir="); found {
				lowers = strings.Split(v, ":")
			}
		}
		return upper, lowers, upper != ""
	case "bind":
		for _, o := range m.Options {
			if o == "ro" {
				return "", nil, false
			}
		}
		return m.Source, nil, true
	}
	return "", nil, false
}
