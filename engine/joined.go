package engine

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/runtime"
)

// parseVolumesFrom splits a --volumes-from entry, "container[:mode]", as
// dockerd does: the mode is ro or rw (rw when absent), with an SELinux
// label mode at most; propagation and copy modes are refused, the mounts
// keep the source container's.
func parseVolumesFrom(s string) (ref, mode string, err error) {
	if s == "" {
		return "", "", invalid("volumes-from specification cannot be an empty string")
	}
	ref, mode, _ = strings.Cut(s, ":")
	if mode == "" {
		return ref, "rw", nil
	}
	if !validMode(mode) || modeHas(mode, propagationModes) != "" || modeHas(mode, copyModes) != "" {
		return "", "", invalid("invalid mode: %v", mode)
	}
	return ref, mode, nil
}

// volumesFrom resolves HostConfig.VolumesFrom: the mount points of each
// named container (its volumes, binds and --mount tmpfs), read-only when
// the entry says ro or the source's mount is. A later entry's mount
// replaces an earlier one at the same destination. The copies never copy
// the image's content up, and the volumes stay the source's: From names
// the container they came from.
func (e *Engine) volumesFrom(list []string) ([]MountPoint, error) {
	var out []MountPoint
	for _, s := range list {
		ref, mode, err := parseVolumesFrom(s)
		if err != nil {
			return nil, err
		}
		e.mu.Lock()
		c, err := e.lookupLocked(ref)
		var mps []MountPoint
		if err == nil {
			mps = c.rec.clone().Mounts
		}
		e.mu.Unlock()
		if err != nil {
			return nil, joinedErr(err)
		}
		ro := modeHas(mode, rwModes) == "ro"
		for _, mp := range mps {
			if mp.Type == mount.TypeTmpfs && mp.Spec == nil {
				// --tmpfs is no mount point of dockerd's: not shared.
				continue
			}
			if mp.Type == mount.TypeImage {
				// Its snapshot is the source's, gone with it.
				continue
			}
			cp := mp
			cp.RW = mp.RW && !ro
			cp.Mode = ""
			cp.NoCopy = true
			cp.From = c.rec.ID
			if mp.Anonymous {
				cp.Anonymous = false
				cp.SharedAnonymous = true
			}
			out = slices.DeleteFunc(out, func(m MountPoint) bool { return m.Destination == cp.Destination })
			out = append(out, cp)
		}
	}
	return out, nil
}

// lookupJoined finds a container a creation joins or copies from
// (--network, --pid and --ipc container:<name>, --volumes-from). A missing
// one is the request's fault: a 400, as dockerd's, and no 404 the CLI
// would take for a missing image and pull.
func (e *Engine) lookupJoined(ref string) (*ctr, error) {
	c, err := e.lookup(ref)
	return c, joinedErr(err)
}

func joinedErr(err error) error {
	if errdefs.IsNotFound(err) {
		return invalid("%s", err.Error())
	}
	return err
}

// ipcDonor checks --ipc container:<name>: the donor must run and share
// its IPC (--ipc shareable, or the host's), as dockerd requires. nil
// without that mode.
func (e *Engine) ipcDonor(mode container.IpcMode) (*ctr, error) {
	if !mode.IsContainer() {
		return nil, nil
	}
	ref := mode.Container()
	t, err := e.lookupJoined(ref)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	id, donorMode := t.rec.ID, t.rec.HostConfig.IpcMode
	e.mu.Unlock()
	if rc, err := e.rt.Container(id); err != nil || rc.State != runtime.ContainerRunning {
		return nil, errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", ref))
	}
	if !donorMode.IsShareable() && !donorMode.IsHost() {
		return nil, invalid("container %s: non-shareable IPC (hint: use IpcMode:shareable for the donor container)", ref)
	}
	return t, nil
}
