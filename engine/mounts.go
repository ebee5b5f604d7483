package engine

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/runtime/spec"
)

// Mount modes of -v, as dockerd's Linux parser knows them.
var (
	rwModes          = []string{"rw", "ro"}
	labelModes       = []string{"z", "Z"}
	propagationModes = []string{"private", "rprivate", "slave", "rslave", "shared", "rshared"}
	copyModes        = []string{"nocopy"}
	consistencyModes = []string{"consistent", "cached", "delegated"}
)

// validMode reports whether a -v mode string is dockerd's: comma-separated,
// at most one of each kind.
func validMode(mode string) bool {
	if mode == "" {
		return true
	}
	counts := make([]int, 5)
	for _, o := range strings.Split(mode, ",") {
		switch {
		case slices.Contains(rwModes, o):
			counts[0]++
		case slices.Contains(labelModes, o):
			counts[1]++
		case slices.Contains(propagationModes, o):
			counts[2]++
		case slices.Contains(copyModes, o):
			counts[3]++
		case slices.Contains(consistencyModes, o):
			counts[4]++
		default:
			return false
		}
	}
	return slices.Max(counts) <= 1
}

func modeHas(mode string, set []string) string {
	for _, o := range strings.Split(mode, ",") {
		if slices.Contains(set, o) {
			return o
		}
	}
	return ""
}

func errInvalidSpec(raw string) error {
	return invalid("invalid volume specification: '%s'", raw)
}

func errMountConfig(typ mount.Type, format string, args ...any) error {
	return invalid("invalid mount config for type %q: %s", typ, fmt.Sprintf(format, args...))
}

// parseBind parses a -v entry: "dst" (anonymous volume), "src:dst" or
// "src:dst:mode", where src is an absolute host path (bind) or a volume
// name.
func parseBind(raw string) (MountPoint, error) {
	arr := strings.SplitN(raw, ":", 4)
	if arr[0] == "" {
		return MountPoint{}, errInvalidSpec(raw)
	}
	var src, dst, mode string
	switch len(arr) {
	case 1:
		dst = arr[0]
	case 2:
		if validMode(arr[1]) {
			// "/foo:rw": a mode without a source is not a volume.
			return MountPoint{}, errInvalidSpec(raw)
		}
		src, dst = arr[0], arr[1]
	case 3:
		src, dst, mode = arr[0], arr[1], arr[2]
	default:
		return MountPoint{}, errInvalidSpec(raw)
	}
	if !validMode(mode) {
		return MountPoint{}, invalid("invalid mode: %v", mode)
	}
	mp := MountPoint{}
	mp.Mode = mode
	mp.RW = modeHas(mode, rwModes) != "ro"
	typ := mount.TypeVolume
	if path.IsAbs(src) {
		typ = mount.TypeBind
	}
	if err := checkTarget(typ, dst); err != nil {
		return MountPoint{}, fmt.Errorf("%w: %w", errInvalidSpec(raw), err)
	}
	mp.Type = typ
	mp.Destination = path.Clean(dst)
	switch typ {
	case mount.TypeBind:
		mp.Source = path.Clean(src)
		mp.Propagation = mount.PropagationRPrivate
		if p := modeHas(mode, propagationModes); p != "" {
			mp.Propagation = mount.Propagation(p)
		}
	case mount.TypeVolume:
		if modeHas(mode, propagationModes) != "" {
			return MountPoint{}, invalid("%s: propagation mode is only valid for bind mounts", errInvalidSpec(raw).Error())
		}
		if src != "" {
			if err := volume.CheckName(src); err != nil {
				return MountPoint{}, fmt.Errorf("create %s: %w", src, err)
			}
		}
		mp.Name = src
		mp.Driver = volume.DriverLocal
		mp.Anonymous = src == ""
		mp.NoCopy = modeHas(mode, copyModes) == "nocopy"
	}
	return mp, nil
}

// checkTarget validates a mount destination.
func checkTarget(typ mount.Type, dst string) error {
	if dst == "" {
		return errMountConfig(typ, "field Target must not be empty")
	}
	if !path.IsAbs(dst) {
		return errMountConfig(typ, "invalid mount path: '%s' mount path must be absolute", dst)
	}
	if path.Clean(dst) == "/" {
		return errMountConfig(typ, "invalid specification: destination can't be '/'")
	}
	return nil
}

// parseMount checks a --mount (HostConfig.Mounts) entry as dockerd's Linux
// parser does.
func parseMount(m mount.Mount) (MountPoint, error) {
	typ := m.Type
	switch {
	case typ != mount.TypeBind && m.BindOptions != nil:
		return MountPoint{}, errMountConfig(typ, "field BindOptions must not be specified")
	case typ != mount.TypeVolume && m.VolumeOptions != nil:
		return MountPoint{}, errMountConfig(typ, "field VolumeOptions must not be specified")
	case typ != mount.TypeTmpfs && m.TmpfsOptions != nil:
		return MountPoint{}, errMountConfig(typ, "field TmpfsOptions must not be specified")
	case typ != mount.TypeImage && m.ImageOptions != nil:
		return MountPoint{}, errMountConfig(typ, "field ImageOptions must not be specified")
	}
	if err := checkTarget(typ, m.Target); err != nil {
		return MountPoint{}, err
	}
	mp := MountPoint{Spec: &m}
	mp.Type = typ
	mp.Destination = path.Clean(m.Target)
	mp.RW = !m.ReadOnly
	switch typ {
	case mount.TypeBind:
		if m.Source == "" {
			return MountPoint{}, errMountConfig(typ, "field Source must not be empty")
		}
		if !path.IsAbs(m.Source) {
			return MountPoint{}, errMountConfig(typ, "invalid mount path: '%s' mount path must be absolute", m.Source)
		}
		mp.Source = path.Clean(m.Source)
		mp.Propagation = mount.PropagationRPrivate
		create := false
		if o := m.BindOptions; o != nil {
			if o.Propagation != "" {
				if !slices.Contains(propagationModes, string(o.Propagation)) {
					return MountPoint{}, errMountConfig(typ, "invalid propagation mode: %s", o.Propagation)
				}
				mp.Propagation = o.Propagation
			}
			mp.NonRecursive = o.NonRecursive
			create = o.CreateMountpoint
			switch {
			case o.ReadOnlyNonRecursive && o.ReadOnlyForceRecursive:
				return MountPoint{}, errMountConfig(typ, "options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive")
			case !m.ReadOnly && o.ReadOnlyNonRecursive:
				return MountPoint{}, errMountConfig(typ, "options conflict: Writable && ReadOnlyNonRecursive")
			case !m.ReadOnly && o.ReadOnlyForceRecursive:
				return MountPoint{}, errMountConfig(typ, "options conflict: Writable && ReadOnlyForceRecursive")
			}
			mp.ReadOnlyNonRecursive, mp.ReadOnlyForceRecursive = o.ReadOnlyNonRecursive, o.ReadOnlyForceRecursive
		}
		if _, err := os.Stat(mp.Source); err != nil && !create {
			return MountPoint{}, errMountConfig(typ, "bind source path does not exist: %s", mp.Source)
		}
	case mount.TypeVolume:
		mp.Name = m.Source
		mp.Driver = volume.DriverLocal
		mp.Anonymous = m.Source == ""
		if m.Source != "" {
			if err := volume.CheckName(m.Source); err != nil {
				return MountPoint{}, fmt.Errorf("create %s: %w", m.Source, err)
			}
		}
		if o := m.VolumeOptions; o != nil {
			mp.NoCopy = o.NoCopy
			if o.DriverConfig != nil && o.DriverConfig.Name != "" && o.DriverConfig.Name != volume.DriverLocal {
				return MountPoint{}, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("error looking up volume plugin %s: plugin %q not found", o.DriverConfig.Name, o.DriverConfig.Name))
			}
			if o.Subpath != "" {
				if mp.Anonymous {
					return MountPoint{}, errMountConfig(typ, "must not set Subpath when using anonymous volumes")
				}
				if !filepath.IsLocal(o.Subpath) {
					return MountPoint{}, errMountConfig(typ, "subpath must be a relative path within the volume")
				}
				mp.Subpath = o.Subpath
			}
		}
	case mount.TypeTmpfs:
		if m.Source != "" {
			return MountPoint{}, errMountConfig(typ, "field Source must not be specified")
		}
		opts, err := tmpfsOptions(m.TmpfsOptions, m.ReadOnly)
		if err != nil {
			return MountPoint{}, errMountConfig(typ, "%v", err)
		}
		mp.TmpfsOptions = opts
	case mount.TypeImage:
		if m.Source == "" {
			return MountPoint{}, errMountConfig(typ, "field Source must not be empty")
		}
		if o := m.ImageOptions; o != nil && o.Subpath != "" {
			if !filepath.IsLocal(o.Subpath) {
				return MountPoint{}, errMountConfig(typ, "subpath must be a relative path within the volume")
			}
			mp.Subpath = o.Subpath
		}
		// Read-only whatever the request says, as dockerd's.
		mp.Name = m.Source
		mp.RW = false
		mp.Propagation = mount.PropagationRPrivate
	default:
		return MountPoint{}, errMountConfig(typ, "mount type unknown")
	}
	return mp, nil
}

// tmpfsOptions converts --mount tmpfs options to mount options.
func tmpfsOptions(o *mount.TmpfsOptions, readOnly bool) ([]string, error) {
	var out []string
	if readOnly {
		out = append(out, "ro")
	}
	if o == nil {
		return out, nil
	}
	if o.Mode != 0 {
		out = append(out, fmt.Sprintf("mode=%o", o.Mode))
	}
	if o.SizeBytes != 0 {
		size, suffix := o.SizeBytes, ""
		for _, r := range []struct {
			s string
			d int64
		}{{"g", 1 << 30}, {"m", 1 << 20}, {"k", 1 << 10}} {
			if size%r.d == 0 {
				size, suffix = size/r.d, r.s
				break
			}
		}
		out = append(out, fmt.Sprintf("size=%d%s", size, suffix))
	}
	for _, opt := range o.Options {
		if len(opt) < 1 || len(opt) > 2 {
			return nil, fmt.Errorf("invalid option array length")
		}
		if opt[0] != "exec" && opt[0] != "noexec" {
			return nil, fmt.Errorf("invalid option: %s", opt[0])
		}
		out = append(out, strings.Join(opt, "="))
	}
	return out, nil
}

// planMounts resolves every mount of a create request: --mount, -v,
// --tmpfs, then the mounts of --volumes-from (from, see volumesFrom) and
// the config's and image's VOLUMEs that nothing before covers (anonymous
// volumes). A destination may appear once among the first three.
func planMounts(cfg *container.Config, hc *container.HostConfig, from []MountPoint) ([]MountPoint, error) {
	var out []MountPoint
	seen := map[string]bool{}
	add := func(mp MountPoint) error {
		if seen[mp.Destination] {
			return invalid("Duplicate mount point: %s", mp.Destination)
		}
		seen[mp.Destination] = true
		out = append(out, mp)
		return nil
	}
	for _, m := range hc.Mounts {
		mp, err := parseMount(m)
		if err != nil {
			return nil, err
		}
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	for _, b := range hc.Binds {
		mp, err := parseBind(b)
		if err != nil {
			return nil, err
		}
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	dsts := make([]string, 0, len(hc.Tmpfs))
	for d := range hc.Tmpfs {
		dsts = append(dsts, d)
	}
	sort.Strings(dsts)
	for _, d := range dsts {
		if err := checkTarget(mount.TypeTmpfs, d); err != nil {
			return nil, err
		}
		mp := MountPoint{}
		mp.Type = mount.TypeTmpfs
		mp.Destination = path.Clean(d)
		mp.RW = true
		if o := hc.Tmpfs[d]; o != "" {
			mp.TmpfsOptions = strings.Split(o, ",")
			mp.RW = !slices.Contains(mp.TmpfsOptions, "ro")
		}
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	for _, mp := range from {
		if !seen[mp.Destination] {
			seen[mp.Destination] = true
			out = append(out, mp)
		}
	}
	vols := make([]string, 0, len(cfg.Volumes))
	for d := range cfg.Volumes {
		vols = append(vols, d)
	}
	sort.Strings(vols)
	for _, d := range vols {
		if err := checkTarget(mount.TypeVolume, d); err != nil {
			return nil, err
		}
		if seen[path.Clean(d)] {
			continue
		}
		mp := MountPoint{Anonymous: true}
		mp.Type = mount.TypeVolume
		mp.Destination = path.Clean(d)
		mp.Driver = volume.DriverLocal
		mp.RW = true
		if err := add(mp); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// specMounts turns resolved mount points into the runtime's mounts.
// Volume sources must be set (the volumes' data directories). rro says
// the host can make a mount recursively read-only.
func specMounts(mps []MountPoint, rro bool) ([]spec.Mount, error) {
	var out []spec.Mount
	for _, mp := range mps {
		switch mp.Type {
		case mount.TypeBind, mount.TypeVolume:
			src := mp.Source
			if mp.Subpath != "" {
				src = filepath.Join(src, mp.Subpath)
			}
			m := spec.Mount{Source: src, Destination: mp.Destination, Type: "bind", ReadOnly: !mp.RW}
			switch mp.Propagation {
			case "", mount.PropagationRPrivate, mount.PropagationPrivate:
				m.Propagation = spec.PropagationPrivate
			case mount.PropagationRSlave, mount.PropagationSlave:
				m.Propagation = spec.PropagationHostToContainer
			case mount.PropagationRShared, mount.PropagationShared:
				m.Propagation = spec.PropagationBidirectional
			}
			switch mp.Propagation {
			case mount.PropagationPrivate, mount.PropagationSlave, mount.PropagationShared:
				m.NonRecursivePropagation = true
			}
			if mp.NonRecursive {
				m.Options = append(m.Options, "bind")
			}
			if !mp.RW && !mp.ReadOnlyNonRecursive {
				// The runtime makes only a privately propagated tree
				// recursively read-only (a read-only tree cannot take
				// the host's mounts).
				can := rro && m.Propagation == spec.PropagationPrivate
				if mp.ReadOnlyForceRecursive && !can {
					return nil, invalid("mount %s: a recursively read-only mount needs kernel 5.12 and private propagation", mp.Destination)
				}
				m.RecursiveReadOnly = can
			}
			out = append(out, m)
		case mount.TypeImage:
			im := mp.ImageMount
			if im == nil {
				return nil, fmt.Errorf("image mount %s: no snapshot: %w", mp.Destination, errdefs.ErrFailedPrecondition)
			}
			out = append(out, spec.Mount{
				Type: im.Type, Source: im.Source, Destination: mp.Destination, ReadOnly: true,
				Options: append(slices.Clone(im.Options), "nosuid", "nodev"),
			})
		case mount.TypeTmpfs:
			opts := mergeTmpfsOptions(mp.TmpfsOptions)
			m := spec.Mount{Source: "tmpfs", Destination: mp.Destination, Type: "tmpfs", ReadOnly: !mp.RW}
			m.Options = opts
			out = append(out, m)
		default:
			return nil, fmt.Errorf("mount %s: type %q: %w", mp.Destination, mp.Type, errdefs.ErrNotImplemented)
		}
	}
	return out, nil
}

// mergeTmpfsOptions applies dockerd's tmpfs defaults (noexec, nosuid,
// nodev) under the user's options; a later option of the same kind wins
// ("exec" undoes "noexec").
func mergeTmpfsOptions(user []string) []string {
	opts := append([]string{"noexec", "nosuid", "nodev"}, user...)
	flags := map[string]string{"exec": "exec", "noexec": "exec", "suid": "suid", "nosuid": "suid", "dev": "dev", "nodev": "dev", "ro": "rw", "rw": "rw"}
	var out []string
	last := map[string]int{}
	for _, o := range opts {
		key := o
		if k, ok := flags[o]; ok {
			key = k
		} else if k, _, ok := strings.Cut(o, "="); ok {
			key = k
		}
		if key == "rw" {
			// read-only is the typed field's business.
			continue
		}
		if i, ok := last[key]; ok {
			out[i] = o
			continue
		}
		last[key] = len(out)
		out = append(out, o)
	}
	return out
}
