package namespace

import (
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

// TestPinHostnameNeedsUTS: a hostname without a new UTS namespace would
// rename the host; Pin refuses before it unshares anything.
func TestPinHostnameNeedsUTS(t *testing.T) {
	err := Pin(PinOptions{Paths: map[Kind]string{Net: filepath.Join(t.TempDir(), "net")}, Hostname: "h"})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("Pin with a hostname and no UTS namespace: %v, want InvalidArgument", err)
	}
}
