package spec

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
)

// CheckPropagation verifies on the host that each bind mount asking for
// slave or shared propagation has a source whose mount can provide it:
// Bidirectional needs a shared mount, HostToContainer a shared or slave
// one. Without this a container silently gets a private copy and never
// sees (or exports) the mounts it was promised; containerd and CRI-O refuse
// such requests the same way. Generate does not call it so that it stays
// free of host state; the caller runs it before creating the container.
func CheckPropagation(mounts []Mount) error {
	for _, m := range mounts {
		if m.Propagation == PropagationPrivate {
			continue
		}
		src, err := filepath.EvalSymlinks(m.Source)
		if err != nil {
			return fmt.Errorf("check propagation of %s: %w: %w", m.Source, errdefs.ErrInvalidArgument, err)
		}
		info, err := mountOf(src)
		if err != nil {
			return fmt.Errorf("check propagation of %s: %w", m.Source, err)
		}
		shared := hasOptionalTag(info.Optional, "shared")
		slave := hasOptionalTag(info.Optional, "master")
		switch {
		case m.Propagation == PropagationBidirectional && !shared:
			return fmt.Errorf("mount %s: source %s is on mount %s, which is not shared (needed for bidirectional propagation): %w",
				m.Destination, m.Source, info.Mountpoint, errdefs.ErrFailedPrecondition)
		case m.Propagation == PropagationHostToContainer && !shared && !slave:
			return fmt.Errorf("mount %s: source %s is on mount %s, which is neither shared nor slave (needed for host-to-container propagation): %w",
				m.Destination, m.Source, info.Mountpoint, errdefs.ErrFailedPrecondition)
		}
	}
	return nil
}

// mountOf returns the mount that holds path: the deepest mount point that
// is path or one of its parents (the last one listed wins when mounts are
// stacked on the same point).
func mountOf(path string) (*mountinfo.Info, error) {
	infos, err := mountinfo.GetMounts(mountinfo.ParentsFilter(path))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	var best *mountinfo.Info
	for _, i := range infos {
		if best == nil || len(i.Mountpoint) >= len(best.Mountpoint) {
			best = i
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no mount holds %s: %w", path, errdefs.ErrNotFound)
	}
	return best, nil
}

func hasOptionalTag(optional, tag string) bool {
	for _, f := range strings.Fields(optional) {
		if name, _, _ := strings.Cut(f, ":"); name == tag {
			return true
		}
	}
	return false
}
