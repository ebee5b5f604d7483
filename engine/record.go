package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/atomicfile"
)

// recordFile is the record's name in the container's directory.
const recordFile = "container.json"

// record is what the engine keeps of a container: Docker's side of it.
// State, exit code, PID and run timestamps are the runtime's, read from
// there (the runtime learns exits even while berthd is down).
type record struct {
	ID      string
	Name    string // without Docker's leading "/"
	Created time.Time
	// Path and Args are the process's command line (entrypoint + cmd).
	Path string
	Args []string
	// Config is the create config merged with the image's.
	Config     *container.Config
	HostConfig *container.HostConfig
	// NetworkingConfig is what create asked for (endpoints by network).
	NetworkingConfig *network.NetworkingConfig `json:",omitempty"`
	// ImageID is the image's config digest.
	ImageID string
	Mounts  []MountPoint `json:",omitempty"`
	// LogPath is the container's log file.
	LogPath string
	// The sandbox's files, bind-mounted into the container.
	HostsPath      string `json:",omitempty"`
	ResolvConfPath string `json:",omitempty"`
	HostnamePath   string `json:",omitempty"`
	// RestartCount counts the restarts of the restart policy since the
	// user last started the container.
	RestartCount int
	// StoppedByUser is Docker's HasBeenManuallyStopped: the last end was a
	// stop or kill by the user, which no policy undoes (not even
	// unless-stopped after a daemon restart).
	StoppedByUser bool `json:",omitempty"`
	// StartedBefore is set by the first start (volumes are copied up
	// then).
	StartedBefore bool `json:",omitempty"`
	// HandledExit is the runtime's FinishedAt of the last exit the engine
	// handled: a later one happened while berthd was down.
	HandledExit time.Time `json:",omitzero"`
	// Backoff is the delay before the next restart of the policy: 100 ms
	// doubling up to a minute, reset after 10 s of running.
	Backoff time.Duration `json:",omitempty"`
	// Rebuild is set while the runtime's side is made again after a
	// reboot (see rebuildIfLost).
	Rebuild *rebuildState `json:",omitempty"`
	// ResourcesPending: an update changed HostConfig.Resources while the
	// container did not run; its next start applies them.
	ResourcesPending bool `json:",omitempty"`
	// StartError is why the last start failed (cleared by a start that
	// succeeds): inspect's State.Error, with exit code 128, as dockerd
	// keeps it.
	StartError string `json:",omitempty"`
	// Pending is set while the creation runs; Open undoes it.
	Pending bool `json:",omitempty"`
	// Removing is set once a removal started; Open finishes it, removing
	// the anonymous volumes when RemoveVolumes says so.
	Removing      bool `json:",omitempty"`
	RemoveVolumes bool `json:",omitempty"`
}

// MountPoint is one of the container's mounts as it resolved at create:
// Docker's MountPoint plus what the engine needs to mount it again.
type MountPoint struct {
	container.MountPoint
	// Anonymous volumes were made for this container (-v /path, image
	// VOLUME); rm -v and --rm remove them.
	Anonymous bool `json:",omitempty"`
	// From is the container whose mount point --volumes-from copied.
	From string `json:",omitempty"`
	// SharedAnonymous marks the copy of another container's anonymous
	// volume: rm -v removes it once no container uses it, as dockerd's,
	// and an undone create never does.
	SharedAnonymous bool `json:",omitempty"`
	// NoCopy skips the copy of the image's content into an empty volume.
	NoCopy bool `json:",omitempty"`
	// Subpath mounts a directory of the volume.
	Subpath string `json:",omitempty"`
	// TmpfsOptions are the tmpfs mount's options (size=, mode=).
	TmpfsOptions []string `json:",omitempty"`
	// NonRecursive bind mounts only the top mount.
	NonRecursive bool `json:",omitempty"`
	// A read-only bind or volume is recursively read-only where the
	// kernel can ("rro", 5.12), as with dockerd 25+, unless
	// ReadOnlyNonRecursive (asked, or API below 1.44);
	// ReadOnlyForceRecursive fails where it cannot.
	ReadOnlyNonRecursive   bool `json:",omitempty"`
	ReadOnlyForceRecursive bool `json:",omitempty"`
	// Snapshot is the read-only view of an image mount's image (named
	// <container ID>-im<index>); ImageMount is its mount, narrowed to
	// the requested sub-path.
	Snapshot   string            `json:",omitempty"`
	ImageMount *imagestore.Mount `json:",omitempty"`
	// Spec is the mount as the create request gave it (for inspect's
	// HostConfig.Mounts); nil for -v and image volumes.
	Spec *mount.Mount `json:",omitempty"`
}

func (r record) clone() record {
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("encode container record: %v", err))
	}
	var out record
	if err := json.Unmarshal(b, &out); err != nil {
		panic(fmt.Sprintf("decode container record: %v", err))
	}
	return out
}

func writeRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return fmt.Errorf("encode container record %s: %w", r.ID, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, recordFile), b, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", r.ID, err)
	}
	return nil
}

func noteRecord(dir string, r record) error {
	b, err := json.MarshalIndent(r, "", "\t")
	if err != nil {
		return fmt.Errorf("encode container record %s: %w", r.ID, err)
	}
	if err := atomicfile.Replace(filepath.Join(dir, recordFile), b, 0o600); err != nil {
		return fmt.Errorf("save container %s: %w", r.ID, err)
	}
	return nil
}

// readRecord reads dir's record; os.ErrNotExist when there is none (or
// only a torn one: the write was never acknowledged).
func readRecord(dir string) (record, error) {
	b, err := os.ReadFile(filepath.Join(dir, recordFile))
	if err != nil {
		return record{}, err
	}
	if len(bytes.Trim(b, "\x00 \n\t")) == 0 {
		return record{}, fmt.Errorf("empty record in %s: %w", dir, os.ErrNotExist)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, fmt.Errorf("load container %s: %w: %w", dir, errdefs.ErrDataLoss, err)
	}
	if r.Config == nil || r.HostConfig == nil {
		return record{}, fmt.Errorf("load container %s: %w: record without a config", dir, errdefs.ErrDataLoss)
	}
	return r, nil
}

func removeRecord(dir string) error {
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(dir))
}

var idPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

func validID(id string) bool { return idPattern.MatchString(id) }
