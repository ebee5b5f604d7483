// Package snapshot makes container root filesystems from unpacked layers
// with overlayfs. A snapshot is a directory
//
//	<root>/snapshots/<id>/upper   writable layer (absent for views)
//	<root>/snapshots/<id>/work    overlay's work dir (absent for views)
//	<root>/snapshots/<id>/snapshot.json  the lower dirs, for GC and restarts
//	<root>/snapshots/<id>/ephemeral      marks a snapshot made with Ephemeral
//
// created under a temporary name and renamed into place, so a snapshot
// either exists with its record or not at all. The record of an
// ephemeral snapshot is not synced: after a power loss it may be there
// but empty, and New removes such a snapshot. The snapshotter returns
// mounts; mounting them is the caller's business, and so is unmounting
// before Remove.
package snapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/atomicfile"
)

const (
	recordFile    = "snapshot.json"
	ephemeralFile = "ephemeral"
	newPrefix     = ".new-"
	rmPrefix      = ".rm-"

	// maxMountData is the size of the page mount(2) copies its data
	// string into, NUL included.
	maxMountData = 4096
)

// Mount is one mount, as mount(2) and the OCI runtime spec take it.
type Mount struct {
	Type    string
	Source  string
	Options []string
}

// Info is what the snapshotter recorded of a snapshot.
type Info struct {
	ID string `json:"id"`
	// Lowers are the layer dirs, topmost first.
	Lowers []string `json:"lowers"`
	// ReadOnly is set for views.
	ReadOnly bool `json:"readOnly,omitempty"`
	// Diffable snapshots are mounted so that their upper dir alone
	// describes their changes (see PrepareDiffable).
	Diffable bool `json:"diffable,omitempty"`
	// Volatile snapshots are mounted with overlay's volatile option (see
	// Options.Ephemeral).
	Volatile bool `json:"volatile,omitempty"`
}

// Snapshotter creates and removes overlay snapshots under one root. One
// process owns a root.
type Snapshotter struct {
	dir string
	// index is whether the kernel knows overlay's index feature, which
	// must then be turned off: with index=on overlay ties an upper dir to
	// the exact lower inodes it was first mounted with, and refuses the
	// shared lowers of layers that another snapshot mounts (containerd
	// passes index=off for the same reason).
	index bool
	// redirect and metacopy are whether the kernel knows those overlay
	// features, which diffable snapshots turn off.
	redirect, metacopy bool
	// volatile is whether overlay takes the volatile option (Linux 5.10).
	volatile bool
}

// New opens (creating if needed) the snapshotter under root and removes
// snapshots whose creation or removal was interrupted.
func New(root string) (*Snapshotter, error) {
	dir := filepath.Join(root, "snapshots")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open snapshotter: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open snapshotter: %w", err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if strings.HasPrefix(e.Name(), ".") || unreadableEphemeral(p, e.Name()) {
			if err := os.RemoveAll(p); err != nil {
				return nil, fmt.Errorf("open snapshotter: remove unfinished %s: %w", e.Name(), err)
			}
		}
	}
	return &Snapshotter{
		dir:      dir,
		index:    overlayParam("index"),
		redirect: overlayParam("redirect_dir"),
		metacopy: overlayParam("metacopy"),
		volatile: kernelAtLeast(5, 10),
	}, nil
}

// kernelAtLeast says whether the running kernel is major.minor or newer.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// unreadableEphemeral says whether the snapshot in dir is ephemeral and
// lost its record (a power loss before the record reached the disk).
func unreadableEphemeral(dir, id string) bool {
	if _, err := os.Lstat(filepath.Join(dir, ephemeralFile)); err != nil {
		return false
	}
	_, err := readRecord(filepath.Join(dir, recordFile), id)
	return err != nil
}

func overlayParam(name string) bool {
	_, err := os.Stat("/sys/module/overlay/parameters/" + name)
	return err == nil
}

func validID(id string) error {
	if id == "" || len(id) > 255 || strings.ContainsAny(id, "/\x00") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("snapshot id %q: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

func validLowers(lowers []string) error {
	for _, l := range lowers {
		// "," and ":" separate overlay options and lower dirs.
		if !filepath.IsAbs(l) || strings.ContainsAny(l, ",:\x00") {
			return fmt.Errorf("lower dir %q: must be an absolute path without ',' or ':': %w", l, errdefs.ErrInvalidArgument)
		}
		fi, err := os.Stat(l)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("lower dir %s: %w", l, errdefs.ErrNotFound)
			}
			return fmt.Errorf("lower dir %s: %w", l, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("lower dir %s: not a directory: %w", l, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// Prepare creates a writable snapshot over lowers (layer fs dirs, topmost
// first, overlay's lowerdir order) and returns its mount. Without lowers
// the mount is a read-write bind of the empty upper dir. An existing id
// gives errdefs.ErrAlreadyExists.
func (s *Snapshotter) Prepare(id string, lowers []string) ([]Mount, error) {
	return s.create(Info{ID: id, Lowers: lowers}, Options{})
}

// Options tune a snapshot's creation.
type Options struct {
	// Ephemeral is for a snapshot that does not outlive its maker's
	// process (a build step's, which a restarted berthd removes): its
	// record is written without syncing it and its directory to disk,
	// which costs a few fsyncs per creation. A crash of the process
	// leaves a complete snapshot as ever; a power loss may leave one
	// without a readable record, which New removes. A writable ephemeral
	// snapshot is mounted volatile where the kernel can (5.10): without
	// it, every unmount of an overlay syncs its upper dir's whole file
	// system (syncfs), and fsync inside it syncs too; an ephemeral
	// snapshot is never mounted again after a crash, which is what
	// volatile forbids.
	Ephemeral bool
}

// PrepareDiffable is Prepare for a snapshot whose upper dir becomes a
// layer (a build step): overlay's redirect_dir and metacopy are turned off,
// so that a renamed directory is copied up whole and a chmod copies the
// data, and the upper dir, with its whiteouts and opaque markers, is the
// complete diff against the lowers (docker's overlay2 makes the same
// choice).
func (s *Snapshotter) PrepareDiffable(id string, lowers []string, opts Options) ([]Mount, error) {
	return s.create(Info{ID: id, Lowers: lowers, Diffable: true}, opts)
}

// UpperDir is the writable directory of snapshot id (which may not exist).
func (s *Snapshotter) UpperDir(id string) (string, error) {
	if err := validID(id); err != nil {
		return "", err
	}
	return filepath.Join(s.dir, id, "upper"), nil
}

// View creates a read-only snapshot of lowers: a read-only bind mount of a
// single lower, or an overlay of several without upper dir.
func (s *Snapshotter) View(id string, lowers []string, opts Options) ([]Mount, error) {
	if len(lowers) == 0 {
		return nil, fmt.Errorf("view %s: no lower dirs: %w", id, errdefs.ErrInvalidArgument)
	}
	return s.create(Info{ID: id, Lowers: lowers, ReadOnly: true}, opts)
}

func (s *Snapshotter) create(info Info, opts Options) (_ []Mount, retErr error) {
	info.Volatile = opts.Ephemeral && !info.ReadOnly && s.volatile
	if err := validID(info.ID); err != nil {
		return nil, err
	}
	if err := validLowers(info.Lowers); err != nil {
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	final := filepath.Join(s.dir, info.ID)
	// Check the mount data fits before leaving anything on disk.
	mounts, err := s.mounts(final, info)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, errdefs.ErrAlreadyExists)
	}

	tmp, err := os.MkdirTemp(s.dir, newPrefix)
	if err != nil {
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	defer func() {
		if retErr != nil {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	if !info.ReadOnly {
		if err := makeUpper(tmp, info.Lowers); err != nil {
			return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
		}
	}
	if opts.Ephemeral {
		// The marker is made before the record: a name, ordered with the
		// rename by the file system's journal, where the record's content
		// may not be.
		if err := os.WriteFile(filepath.Join(tmp, ephemeralFile), nil, 0o600); err != nil {
			return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
		}
		b, err := json.Marshal(info)
		if err == nil {
			err = os.WriteFile(filepath.Join(tmp, recordFile), b, 0o600)
		}
		if err != nil {
			return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
		}
	} else if err := atomicfile.WriteJSON(filepath.Join(tmp, recordFile), info, 0o600); err != nil {
		// WriteJSON also syncs tmp, which makes upper/ and work/ durable
		// too.
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return nil, fmt.Errorf("create snapshot %s: %w", info.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
	}
	if !opts.Ephemeral {
		if err := atomicfile.SyncDir(s.dir); err != nil {
			return nil, fmt.Errorf("create snapshot %s: %w", info.ID, err)
		}
	}
	return mounts, nil
}

// makeUpper makes the upper and work dirs in dir. overlayfs shows the upper
// dir's owner and mode as the container's "/", so they are copied from the
// topmost lower (as containerd does); without lowers "/" is root's 0755.
func makeUpper(dir string, lowers []string) error {
	upper := filepath.Join(dir, "upper")
	mode, uid, gid := os.FileMode(0o755), 0, 0
	if len(lowers) > 0 {
		var st unix.Stat_t
		if err := unix.Stat(lowers[0], &st); err != nil {
			return fmt.Errorf("stat lower dir %s: %w", lowers[0], err)
		}
		mode = os.FileMode(st.Mode & 0o777)
		if st.Mode&unix.S_ISVTX != 0 {
			mode |= os.ModeSticky
		}
		uid, gid = int(st.Uid), int(st.Gid)
	}
	if err := os.Mkdir(upper, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(upper, mode); err != nil {
		return err
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(upper, uid, gid); err != nil {
			return err
		}
	}
	return os.Mkdir(filepath.Join(dir, "work"), 0o700)
}

// mounts computes the mounts of the snapshot in dir.
//
// The overlay options travel as mount(2)'s data string, which the kernel
// copies into one page: with lower dirs of ~80 bytes (<root>/layers/<64
// hex>/fs) some 45 layers fit. Longer chains fail here with a clear error
// rather than at mount time; lifting the limit takes short symlinked lower
// paths or the new mount API's per-layer "lowerdir+" (Linux 6.8), which the
// runtime does not use yet.
func (s *Snapshotter) mounts(dir string, info Info) ([]Mount, error) {
	switch {
	case len(info.Lowers) == 0:
		return []Mount{{Type: "bind", Source: filepath.Join(dir, "upper"), Options: []string{"rw", "rbind"}}}, nil
	case len(info.Lowers) == 1 && info.ReadOnly:
		return []Mount{{Type: "bind", Source: info.Lowers[0], Options: []string{"ro", "rbind"}}}, nil
	}
	var opts []string
	if s.index {
		opts = append(opts, "index=off")
	}
	if !info.ReadOnly {
		opts = append(opts,
			"workdir="+filepath.Join(dir, "work"),
			"upperdir="+filepath.Join(dir, "upper"))
	}
	if info.Diffable && s.redirect {
		opts = append(opts, "redirect_dir=off")
	}
	if info.Diffable && s.metacopy {
		opts = append(opts, "metacopy=off")
	}
	if info.Volatile && !info.ReadOnly {
		opts = append(opts, "volatile")
	}
	opts = append(opts, "lowerdir="+strings.Join(info.Lowers, ":"))
	if n := len(strings.Join(opts, ",")); n >= maxMountData {
		return nil, fmt.Errorf("overlay options for %d lower dirs take %d bytes, the kernel takes at most %d: %w",
			len(info.Lowers), n, maxMountData-1, errdefs.ErrNotImplemented)
	}
	return []Mount{{Type: "overlay", Source: "overlay", Options: opts}}, nil
}

// Mounts returns the mounts of an existing snapshot (after a restart, say);
// errdefs.ErrNotFound if there is none.
func (s *Snapshotter) Mounts(id string) ([]Mount, error) {
	info, err := s.Stat(id)
	if err != nil {
		return nil, err
	}
	return s.mounts(filepath.Join(s.dir, id), info)
}

// Stat returns the record of a snapshot; errdefs.ErrNotFound if there is
// none.
func (s *Snapshotter) Stat(id string) (Info, error) {
	if err := validID(id); err != nil {
		return Info{}, err
	}
	return readRecord(filepath.Join(s.dir, id, recordFile), id)
}

// Remove removes a snapshot; an absent one is not an error. The caller
// unmounts it first. The snapshot disappears at once (renamed away) even if
// deleting its files is interrupted.
func (s *Snapshotter) Remove(id string) error {
	if err := validID(id); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.dir, rmPrefix)
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	// rename(2) may replace an empty directory (os.Rename refuses to).
	if err := unix.Rename(filepath.Join(s.dir, id), tmp); err != nil {
		os.Remove(tmp)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return nil
}

// List returns every snapshot; GC keeps the layers their Lowers name.
func (s *Snapshotter) List() ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		info, err := readRecord(filepath.Join(s.dir, e.Name(), recordFile), e.Name())
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list snapshots: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}

func readRecord(p, id string) (Info, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("snapshot %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read snapshot %s: %w", id, err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("read snapshot %s: %w: %w", id, errdefs.ErrDataLoss, err)
	}
	return info, nil
}
