package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/namespace"
)

// fakeNetwork records what CreateSandbox asks of the CNI, and whether the
// network namespace was pinned at that moment.
type fakeNetwork struct {
	attachErr error
	ips       []string

	mu       sync.Mutex
	attached []string
	detached []string
	pinned   []bool
}

func (f *fakeNetwork) Attach(_ context.Context, netns string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.attached = append(f.attached, netns)
	f.pinned = append(f.pinned, namespace.Pinned(netns))
	return f.ips, f.attachErr
}

func (f *fakeNetwork) Detach(_ context.Context, netns string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.detached = append(f.detached, netns)
	f.pinned = append(f.pinned, namespace.Pinned(netns))
	return nil
}

// TestSandboxNetworkDuringCreation: the network is attached during
// CreateSandbox, on the pinned namespace; its IPs are the sandbox's; a
// failed attach fails the creation and undoes it; a failure after the
// attach detaches before the namespace is unpinned.
func TestSandboxNetworkDuringCreation(t *testing.T) {
	needRoot(t)
	m := openManager(t)

	t.Run("attached", func(t *testing.T) {
		net := &fakeNetwork{ips: []string{"10.1.2.3", "fd00::3"}}
		sb := newPod(t, m, berthruntime.SandboxConfig{Network: net})
		if !slices.Equal(net.attached, []string{sb.NetNSPath}) || !slices.Equal(net.pinned, []bool{true}) {
			t.Fatalf("attach calls %v (pinned %v), want one on the pinned %s", net.attached, net.pinned, sb.NetNSPath)
		}
		if len(net.detached) != 0 {
			t.Errorf("detached %v after a successful creation", net.detached)
		}
		got, err := m.Sandbox(sb.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(sb.IPs, net.ips) || !slices.Equal(got.IPs, net.ips) {
			t.Errorf("IPs: returned %v, recorded %v, want %v", sb.IPs, got.IPs, net.ips)
		}
		if got.Config.Network != nil {
			t.Errorf("the network hooks stayed in the sandbox's config")
		}
	})

	t.Run("attach fails", func(t *testing.T) {
		boom := errors.New("no IP left")
		net := &fakeNetwork{attachErr: boom}
		_, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "attach-fails", Namespace: "test", CgroupParent: cgroupParent(), Network: net})
		if !errors.Is(err, boom) {
			t.Fatalf("CreateSandbox error %v, want the attach error", err)
		}
		if len(net.attached) != 1 || len(net.detached) != 0 {
			t.Errorf("attach %v detach %v: want one attach and no detach (Attach undoes itself)", net.attached, net.detached)
		}
		if namespace.Pinned(net.attached[0]) {
			t.Errorf("network namespace %s still pinned", net.attached[0])
		}
		for _, s := range m.ListSandboxes() {
			if s.Config.Name == "attach-fails" {
				t.Errorf("sandbox %s left after the failed creation", s.ID)
			}
		}
	})

	t.Run("failure after attach", func(t *testing.T) {
		cfg := testConfig()
		// The pause holder cannot start: the creation fails after CNI ran.
		cfg.ShimBinary = filepath.Join(t.TempDir(), "no-such-shim")
		// A root of its own: m's records are not this Manager's.
		cfg.Root = t.TempDir()
		state, err := os.MkdirTemp("/tmp", "brt")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(state)
		cfg.StateDir = state
		var m2 *berthruntime.Manager
		m2, err = berthruntime.Open(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer m2.Close()
		net := &fakeNetwork{ips: []string{"10.1.2.4"}}
		_, err = m2.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "fails-late", Namespace: "test", CgroupParent: cgroupParent(), Network: net})
		if err == nil {
			t.Fatal("CreateSandbox without a pause binary succeeded")
		}
		if len(net.attached) != 1 || !slices.Equal(net.detached, net.attached) {
			t.Fatalf("attach %v detach %v: want the attached netns detached", net.attached, net.detached)
		}
		if !slices.Equal(net.pinned, []bool{true, true}) {
			t.Errorf("pinned at attach, detach: %v, want detach before unpin", net.pinned)
		}
		if namespace.Pinned(net.attached[0]) {
			t.Errorf("network namespace %s still pinned", net.attached[0])
		}
	})
}
