package builder

import (
	"testing"

	"github.com/containerd/errdefs"
)

// TestConfigDefaultNetwork: RUN steps default to the bridge, as docker's
// classic builder runs them (a RUN must not reach the host's loopback
// services unasked); without a bridge network New says to pick host or
// none; an unknown network is refused.
func TestConfigDefaultNetwork(t *testing.T) {
	c := Config{Root: "/r", StateDir: "/s"}
	if err := c.Validate(); err != nil || c.DefaultNetwork != NetworkBridge {
		t.Fatalf("default network %q (%v), want %q", c.DefaultNetwork, err, NetworkBridge)
	}
	for _, n := range []string{NetworkHost, NetworkNone, NetworkBridge} {
		c := Config{Root: "/r", StateDir: "/s", DefaultNetwork: n}
		if err := c.Validate(); err != nil || c.DefaultNetwork != n {
			t.Errorf("default network %q: %v, kept %q", n, err, c.DefaultNetwork)
		}
	}
	bad := Config{Root: "/r", StateDir: "/s", DefaultNetwork: "container:x"}
	if err := bad.Validate(); !errdefs.IsInvalidArgument(err) {
		t.Errorf("default network container:x: %v, want invalid argument", err)
	}
	if _, err := New(Config{Root: t.TempDir(), StateDir: t.TempDir()}, nil, nil, nil); !errdefs.IsInvalidArgument(err) {
		t.Errorf("New with the bridge default and no bridge network: %v, want invalid argument", err)
	}
}
