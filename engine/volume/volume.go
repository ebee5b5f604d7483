// Package volume is the standalone engine's "local" volume driver: named
// and anonymous volumes, each a directory <Root>/<name>/_data, with
// Docker's options for mounting a device or a tmpfs there instead
// (type, device, o). The engine references a volume for every container
// that mounts it; a referenced volume is not removed (without force).
//
// Crash safety: a volume exists once its directory does; its options,
// labels and creation time are in <Root>/<name>/opts.json, written
// atomically and durably before Create returns. A volume whose options
// file is missing (a crash inside Create) loads as a plain volume, as
// dockerd loads it. References are not stored: the engine takes them
// again from its container records at start-up.
package volume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/atomicfile"
)

const (
	// DriverLocal is the only driver.
	DriverLocal = "local"
	dataDir     = "_data"
	optsFile    = "opts.json"
	// AnonymousLabel marks a volume made for one container (Docker's
	// label, shown by volume inspect and used by prune).
	AnonymousLabel = "com.docker.volume.anonymous"
)

// validName is Docker's rule for local volume names.
var validName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

// Volume describes a volume; changing it changes nothing.
type Volume struct {
	Name       string
	Driver     string
	Mountpoint string
	CreatedAt  time.Time
	Labels     map[string]string
	Options    map[string]string
}

// Anonymous reports whether the volume was made for one container.
func (v *Volume) Anonymous() bool {
	_, ok := v.Labels[AnonymousLabel]
	return ok
}

// record is opts.json.
type record struct {
	CreatedAt time.Time
	Labels    map[string]string `json:",omitempty"`
	Options   map[string]string `json:",omitempty"`
}

// Store holds the volumes under one root.
type Store struct {
	root string

	mu   sync.Mutex
	vols map[string]*Volume
	// refs are the containers that use each volume.
	refs map[string]map[string]struct{}
	// mounts counts the running users of volumes with mount options.
	mounts map[string]int
}

// Open loads the volumes under root (created if missing).
func Open(root string) (*Store, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("volume root %q is not absolute: %w", root, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(root, 0o701); err != nil {
		return nil, fmt.Errorf("open volumes: %w", err)
	}
	s := &Store{root: root, vols: map[string]*Volume{}, refs: map[string]map[string]struct{}{}, mounts: map[string]int{}}
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("open volumes: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !e.IsDir() || !validName.MatchString(name) {
			continue
		}
		fi, err := os.Stat(filepath.Join(root, name, dataDir))
		if err != nil || !fi.IsDir() {
			continue
		}
		v := &Volume{Name: name, Driver: DriverLocal, Mountpoint: filepath.Join(root, name, dataDir), CreatedAt: fi.ModTime()}
		var rec record
		b, err := os.ReadFile(filepath.Join(root, name, optsFile))
		if err == nil {
			if err := json.Unmarshal(b, &rec); err != nil {
				return nil, fmt.Errorf("open volumes: options of %s: %w: %w", name, errdefs.ErrDataLoss, err)
			}
			v.CreatedAt, v.Labels, v.Options = rec.CreatedAt, rec.Labels, rec.Options
		}
		// A device mount left from before a crash is unmounted: the
		// engine mounts it again when a container starts.
		if len(v.Options) > 0 {
			_ = unix.Unmount(v.Mountpoint, unix.MNT_DETACH)
		}
		s.vols[name] = v
	}
	return s, nil
}

// CheckName validates a volume name with Docker's messages.
func CheckName(name string) error {
	if len(name) == 1 {
		return errdefs.ErrInvalidArgument.WithMessage("volume name is too short, names should be at least two alphanumeric characters")
	}
	if !validName.MatchString(name) {
		return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("%q includes invalid characters for a local volume name, only %q are allowed. If you intended to pass a host directory, use absolute path", name, "[a-zA-Z0-9][a-zA-Z0-9_.-]"))
	}
	return nil
}

// validOptions are the local driver's options.
var validOptions = []string{"type", "device", "o", "size"}

func checkOptions(opts map[string]string) error {
	for k := range opts {
		if !slices.Contains(validOptions, k) {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("invalid option: %q", k))
		}
	}
	if _, ok := opts["size"]; ok {
		return errdefs.ErrInvalidArgument.WithMessage("quota size requested but no quota support")
	}
	if len(opts) == 0 {
		return nil
	}
	for _, k := range []string{"type", "device"} {
		if opts[k] == "" {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("missing required option: %q", k))
		}
	}
	return nil
}

// CreateOptions describe a volume to create.
type CreateOptions struct {
	Name    string
	Driver  string
	Labels  map[string]string
	Options map[string]string
}

// Create makes a volume; one that exists already is returned as it is
// (Docker's create is idempotent) unless asked for another driver.
func (s *Store) Create(ctx context.Context, o CreateOptions) (*Volume, error) {
	if o.Driver == "" {
		o.Driver = DriverLocal
	}
	if err := CheckName(o.Name); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Name, err)
	}
	if o.Driver != DriverLocal {
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("error looking up volume plugin %s: plugin %q not found", o.Driver, o.Driver))
	}
	if err := checkOptions(o.Options); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.vols[o.Name]; ok {
		return copyVolume(v), nil
	}
	dir := filepath.Join(s.root, o.Name)
	if err := os.MkdirAll(filepath.Join(dir, dataDir), 0o755); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	rec := record{CreatedAt: time.Now().UTC().Truncate(time.Second), Labels: o.Labels, Options: o.Options}
	b, _ := json.Marshal(rec)
	if err := atomicfile.WriteFile(filepath.Join(dir, optsFile), b, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	if err := atomicfile.SyncDir(s.root); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", o.Name, err)
	}
	v := &Volume{Name: o.Name, Driver: DriverLocal, Mountpoint: filepath.Join(dir, dataDir), CreatedAt: rec.CreatedAt, Labels: o.Labels, Options: o.Options}
	s.vols[o.Name] = v
	return copyVolume(v), nil
}

func copyVolume(v *Volume) *Volume {
	out := *v
	out.Labels = cloneMap(v.Labels)
	out.Options = cloneMap(v.Options)
	return &out
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// notFound is Docker's message for an unknown volume.
func notFound(op, name string) error {
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("%s %s: no such volume", op, name))
}

// Get returns the volume called name.
func (s *Store) Get(name string) (*Volume, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return nil, notFound("get", name)
	}
	return copyVolume(v), nil
}

// List returns every volume, by name.
func (s *Store) List() []*Volume {
	s.mu.Lock()
	out := make([]*Volume, 0, len(s.vols))
	for _, v := range s.vols {
		out = append(out, copyVolume(v))
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Ref records that container id uses the volume; Unref that it stopped.
func (s *Store) Ref(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refs[name] == nil {
		s.refs[name] = map[string]struct{}{}
	}
	s.refs[name][id] = struct{}{}
}

// Unref drops container id's reference.
func (s *Store) Unref(name, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refs[name], id)
	if len(s.refs[name]) == 0 {
		delete(s.refs, name)
	}
}

// Users returns the IDs of the containers that use the volume.
func (s *Store) Users(name string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id := range s.refs[name] {
		out = append(out, id)
	}
	sort.Strings(out)
	return out
}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// Force removes a volume in use, and succeeds for an unknown one.
	Force bool
}

// Remove deletes the volume and its data. A volume in use is refused
// with Docker's message (409) unless forced.
func (s *Store) Remove(ctx context.Context, name string, o RemoveOptions) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		if o.Force {
			return nil
		}
		return notFound("get", name)
	}
	if users := s.refs[name]; len(users) > 0 && !o.Force {
		ids := make([]string, 0, len(users))
		for id := range users {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		return errdefs.ErrConflict.WithMessage(fmt.Sprintf("remove %s: volume is in use - [%s]", name, strings.Join(ids, ", ")))
	}
	if s.mounts[name] > 0 || len(v.Options) > 0 {
		_ = unix.Unmount(v.Mountpoint, unix.MNT_DETACH)
	}
	dir := filepath.Join(s.root, name)
	// The options file first: a crash half-way leaves a plain volume, not
	// a device mount pointing at half-removed data.
	if err := os.Remove(filepath.Join(dir, optsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := atomicfile.SyncDir(s.root); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	delete(s.vols, name)
	delete(s.refs, name)
	delete(s.mounts, name)
	return nil
}

// Mount makes the volume's data available at its mountpoint for a
// starting container: volumes with mount options get their device (or
// tmpfs) mounted by the first user. Unmount undoes it after the last.
func (s *Store) Mount(name string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok {
		return "", notFound("get", name)
	}
	if len(v.Options) == 0 {
		return v.Mountpoint, nil
	}
	if s.mounts[name] == 0 {
		var flags uintptr
		var data []string
		for _, o := range strings.Split(v.Options["o"], ",") {
			switch o {
			case "":
			case "ro":
				flags |= unix.MS_RDONLY
			case "nosuid":
				flags |= unix.MS_NOSUID
			case "nodev":
				flags |= unix.MS_NODEV
			case "noexec":
				flags |= unix.MS_NOEXEC
			case "bind":
				flags |= unix.MS_BIND
			case "rbind":
				flags |= unix.MS_BIND | unix.MS_REC
			default:
				data = append(data, o)
			}
		}
		if err := unix.Mount(v.Options["device"], v.Mountpoint, v.Options["type"], flags, strings.Join(data, ",")); err != nil {
			return "", fmt.Errorf("mount volume %s (%s on %s): %w", name, v.Options["type"], v.Options["device"], err)
		}
	}
	s.mounts[name]++
	return v.Mountpoint, nil
}

// Unmount releases a Mount.
func (s *Store) Unmount(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.vols[name]
	if !ok || len(v.Options) == 0 || s.mounts[name] == 0 {
		return nil
	}
	s.mounts[name]--
	if s.mounts[name] > 0 {
		return nil
	}
	delete(s.mounts, name)
	if err := unix.Unmount(v.Mountpoint, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount volume %s: %w", name, err)
	}
	return nil
}

// Size returns the bytes the volume's data occupies (for system df).
func (s *Store) Size(name string) (int64, error) {
	v, err := s.Get(name)
	if err != nil {
		return 0, err
	}
	var total int64
	err = filepath.WalkDir(v.Mountpoint, func(_ string, d os.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
		return nil
	})
	return total, err
}
