package runtime

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/atomicfile"
)

var idPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)

// newID returns 64 random hex digits.
func newID() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func checkID(id string) error {
	if !idPattern.MatchString(id) {
		return fmt.Errorf("id %q is not 64 lower-case hex digits: %w", id, errdefs.ErrInvalidArgument)
	}
	return nil
}

// Records are always replaced atomically (temp file + rename): a crash
// leaves the old or the new one, never a mix. They are made durable (fsync
// of the file and its directory, two syncs of 0.3-0.6 ms each on this
// kind of disk) once they hold what a caller was told: a finished creation
// and every state change after it.
//
// The writes before that (a creation's pending record, the pause holder's
// PID) are not synced. They exist so that the next Open can undo a
// creation berthd died in: berthd's death (kill -9, a panic) leaves the
// page cache, so they are there; a power loss may lose them, but it also
// ends what they list (mounts, pinned namespaces, cgroups, shims, the
// pause holder), the one thing that outlives a reboot, the pod's CNI
// lease, is released by the CNI GC at start-up, a record directory without
// a record is removed by Open, and a snapshot without a container by the
// CRI service's start-up sweep. Such a record may come back empty or as
// zeros after the crash: Open treats it as missing (errUnsynced).

// writeJSON replaces path atomically and durably.
func writeJSON(path string, v any) error { return encodeJSON(path, v, atomicfile.WriteFile) }

// noteJSON replaces path atomically, without syncing it (see above).
func noteJSON(path string, v any) error { return encodeJSON(path, v, atomicfile.Replace) }

func encodeJSON(path string, v any, write func(string, []byte, os.FileMode) error) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return write(path, b, 0o600)
}

// errUnsynced: a record that is empty or zeros, as an unsynced write can
// be after a power loss.
var errUnsynced = errors.New("record empty: written but not synced before a crash")

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(bytes.Trim(b, "\x00")) == 0 {
		return fmt.Errorf("decode %s: %w", path, errUnsynced)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w: %w", path, errdefs.ErrDataLoss, err)
	}
	return nil
}
