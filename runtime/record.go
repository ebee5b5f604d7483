package runtime

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
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

// writeJSON replaces path atomically and durably (see atomicfile): a crash
// leaves the old or the new content, never a mix.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("decode %s: %w: %w", path, errdefs.ErrDataLoss, err)
	}
	return nil
}
