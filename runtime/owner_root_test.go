package runtime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestOwnersSeeOnlyTheirOwn: a view scoped to one owner never lists, finds,
// stops or hears about another owner's sandboxes and containers, and the
// same pod name may exist once per owner. The kubelet removes every sandbox
// it does not know; this is what keeps it off the engine's containers.
func TestOwnersSeeOnlyTheirOwn(t *testing.T) {
	needRoot(t)
	all := openManager(t)
	cri, engine := all.Owned(berthruntime.OwnerCRI), all.Owned(berthruntime.OwnerEngine)
	criEvents, engineEvents := cri.Subscribe(t.Context()), engine.Subscribe(t.Context())

	name := "same-name"
	pod := newPod(t, cri, berthruntime.SandboxConfig{Name: name, Namespaces: berthruntime.SandboxNamespaces{Network: berthruntime.NamespaceNode}})
	box := newPod(t, engine, berthruntime.SandboxConfig{Name: name, Namespaces: berthruntime.SandboxNamespaces{Network: berthruntime.NamespaceNode}})
	if pod.Config.Owner != berthruntime.OwnerCRI || box.Config.Owner != berthruntime.OwnerEngine {
		t.Fatalf("owners recorded: pod %q, box %q", pod.Config.Owner, box.Config.Owner)
	}
	ctr := newContainer(t, engine, box, ctrOpts{args: []string{"sleep", "60"}})
	if ctr.Config.Owner != berthruntime.OwnerEngine {
		t.Fatalf("container owner %q, want the sandbox's", ctr.Config.Owner)
	}
	start(t, engine, ctr.ID)

	if got := cri.ListSandboxes(); len(got) != 1 || got[0].ID != pod.ID {
		t.Errorf("cri lists sandboxes %v, want only %s", ids(got), pod.ID)
	}
	if got := engine.ListSandboxes(); len(got) != 1 || got[0].ID != box.ID {
		t.Errorf("engine lists sandboxes %v, want only %s", ids(got), box.ID)
	}
	if got := all.ListSandboxes(); len(got) != 2 {
		t.Errorf("the unscoped view lists %d sandboxes, want 2", len(got))
	}
	if got := cri.ListContainers(); len(got) != 0 {
		t.Errorf("cri lists %d containers, want none", len(got))
	}
	for what, err := range map[string]error{
		"Sandbox":       func() error { _, err := cri.Sandbox(box.ID); return err }(),
		"Container":     func() error { _, err := cri.Container(ctr.ID); return err }(),
		"StopContainer": cri.StopContainer(t.Context(), ctr.ID, time.Second),
	} {
		if !errors.Is(err, errdefs.ErrNotFound) {
			t.Errorf("cri %s of the engine's object: %v, want NotFound", what, err)
		}
	}
	// Removing what is not there succeeds (CRI idempotency) and must
	// leave the engine's sandbox alone.
	if err := cri.RemoveSandbox(t.Context(), box.ID); err != nil {
		t.Errorf("cri RemoveSandbox of the engine's sandbox: %v", err)
	}
	if _, err := engine.Sandbox(box.ID); err != nil {
		t.Fatalf("engine sandbox after the cri removed it: %v", err)
	}
	if c, err := engine.Container(ctr.ID); err != nil || c.State != berthruntime.ContainerRunning {
		t.Fatalf("engine container after the cri's attempts: %v %v", c, err)
	}
	// A view cannot create for another owner, nor put its container in
	// another owner's sandbox.
	if _, err := cri.CreateContainer(t.Context(), berthruntime.ContainerConfig{Owner: berthruntime.OwnerEngine, Rootfs: overlay(t), Spec: spec.Container{Args: []string{"true"}}}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("cri creating an engine container: %v, want InvalidArgument", err)
	}
	if _, err := cri.CreateContainer(t.Context(), berthruntime.ContainerConfig{SandboxID: box.ID, Rootfs: overlay(t), Spec: spec.Container{Args: []string{"true"}}}); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("cri creating a container in the engine's sandbox: %v, want NotFound", err)
	}

	select {
	case e := <-engineEvents:
		if e.ContainerID != ctr.ID || e.Owner != berthruntime.OwnerEngine {
			t.Errorf("engine event %+v", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("the engine heard no event of its container")
	}
	select {
	case e := <-criEvents:
		t.Errorf("cri heard the engine's event %+v", e)
	default:
	}
}

func ids(sbs []*berthruntime.Sandbox) []string {
	var out []string
	for _, s := range sbs {
		out = append(out, s.ID)
	}
	return out
}

// TestRecordsWithoutOwnerAreTheCRIs: records written before owners existed
// load as the CRI's, and a creation on the unscoped view without an owner
// is the CRI's too.
func TestRecordsWithoutOwnerAreTheCRIs(t *testing.T) {
	needRoot(t)
	m, err := berthruntime.Open(t.Context(), testConfig())
	if err != nil {
		t.Fatal(err)
	}
	sb, err := m.CreateSandbox(t.Context(), berthruntime.SandboxConfig{Name: "old", Namespace: "test", CgroupParent: cgroupParent(),
		Namespaces: berthruntime.SandboxNamespaces{Network: berthruntime.NamespaceNode}})
	if err != nil {
		t.Fatal(err)
	}
	// Removed through whichever manager is open last.
	current := m
	t.Cleanup(func() {
		if err := current.RemoveSandbox(context.Background(), sb.ID); err != nil {
			t.Errorf("remove sandbox: %v", err)
		}
	})
	if sb.Config.Owner != berthruntime.OwnerCRI {
		t.Fatalf("owner %q, want %q", sb.Config.Owner, berthruntime.OwnerCRI)
	}
	m.Close()
	rec := filepath.Join(testConfig().Root, "sandboxes", sb.ID, "sandbox.json")
	b, err := os.ReadFile(rec)
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`"Owner":\s*"cri",`).ReplaceAllString(string(b), "")
	if old == string(b) {
		t.Fatalf("record has no owner to remove: %s", b)
	}
	if err := os.WriteFile(rec, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	m2 := openManager(t)
	current = m2
	if got, err := m2.Owned(berthruntime.OwnerCRI).Sandbox(sb.ID); err != nil || got.Config.Owner != berthruntime.OwnerCRI {
		t.Fatalf("old record seen by the cri: %+v, %v", got, err)
	}
}
