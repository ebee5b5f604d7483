package runtime_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	berthruntime "github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// TestAdmitHook: a sandbox's Admit hook sees the finished pod while no one
// else can (Sandbox, ListSandboxes, a container joining it); its error
// undoes the pod entirely and the same pod can be made again.
func TestAdmitHook(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	var seen *berthruntime.Sandbox
	cfg := berthruntime.SandboxConfig{Name: "admit", Namespace: "test", CgroupParent: cgroupParent()}
	cfg.Admit = func(ctx context.Context, sb *berthruntime.Sandbox) error {
		seen = sb
		if _, err := m.Sandbox(sb.ID); !errdefs.IsNotFound(err) {
			t.Errorf("Sandbox during Admit: %v, want NotFound", err)
		}
		for _, s := range m.ListSandboxes() {
			if s.ID == sb.ID {
				t.Errorf("ListSandboxes during Admit lists it")
			}
		}
		if _, err := m.CreateContainer(ctx, berthruntime.ContainerConfig{SandboxID: sb.ID, Name: "early", Rootfs: overlay(t), Spec: spec.Container{Args: []string{"true"}}}); err == nil {
			t.Errorf("a container joined the pod during Admit")
		}
		if !isMounted(sb.NetNSPath) || sb.PausePid == 0 {
			t.Errorf("Admit saw an unfinished pod: netns mounted %v, pause %d", isMounted(sb.NetNSPath), sb.PausePid)
		}
		return errors.New("plugin says no")
	}
	if _, err := m.CreateSandbox(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "plugin says no") {
		t.Fatalf("CreateSandbox with a refusing Admit: %v", err)
	}
	if seen == nil {
		t.Fatal("Admit was not called")
	}
	if _, err := m.Sandbox(seen.ID); !errdefs.IsNotFound(err) {
		t.Errorf("refused sandbox: %v, want NotFound", err)
	}
	for _, p := range []string{seen.NetNSPath, seen.IPCNSPath, seen.UTSNSPath, seen.ShmPath} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("refused sandbox left %s", p)
		}
	}
	if alive(seen.PausePid) {
		t.Errorf("refused sandbox left its pause holder %d", seen.PausePid)
	}
	cfg.Admit = nil
	sb, err := m.CreateSandbox(t.Context(), cfg)
	if err != nil {
		t.Fatalf("the same pod again: %v", err)
	}
	if err := m.RemoveSandbox(t.Context(), sb.ID); err != nil {
		t.Fatal(err)
	}
}

// TestAdjustHook: a container's Adjust hook changes the generated spec
// (environment, annotations, limits) while the container is not visible;
// the container runs with the change, its recorded resources are what it
// got (a limit this host cannot apply is dropped as for the caller's own),
// and a failing hook undoes the creation.
func TestAdjustHook(t *testing.T) {
	needRoot(t)
	m := openManager(t)
	sb := newPod(t, m, berthruntime.SandboxConfig{})
	mem := int64(48 << 20)
	id := strings.Repeat("ad", 32)
	cfg := berthruntime.ContainerConfig{
		ID: id, SandboxID: sb.ID, Name: "adjusted", Rootfs: overlay(t),
		Spec: spec.Container{Args: []string{"sleep", "1000"}, Resources: spec.Resources{MemoryLimit: 32 << 20}},
	}
	cfg.Adjust = func(_ context.Context, sp *specs.Spec) error {
		if _, err := m.Container(id); !errdefs.IsNotFound(err) {
			t.Errorf("container visible during Adjust")
		}
		for _, c := range m.ListContainers() {
			if c.Config.Name == "adjusted" {
				t.Errorf("ListContainers during Adjust lists it")
			}
		}
		sp.Process.Env = append(sp.Process.Env, "ADJUSTED_BY=test-plugin")
		if sp.Annotations == nil {
			sp.Annotations = map[string]string{}
		}
		sp.Annotations["test.berth/adjusted"] = "yes"
		sp.Linux.Resources.Memory.Limit = &mem
		sp.Linux.Resources.Memory.Swap = &mem
		// The hugetlb controller is not mounted on this kind of host:
		// the limit is dropped there, and stays where it is mounted.
		sp.Linux.Resources.HugepageLimits = append(sp.Linux.Resources.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: "2MB", Limit: 4 << 20})
		return nil
	}
	c, err := m.CreateContainer(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := m.RemoveContainer(ctx, c.ID); err != nil {
			t.Errorf("remove container: %v", err)
		}
	})
	start(t, m, c.ID)
	if got := execOut(t, m, c.ID, "sh", "-c", "echo $ADJUSTED_BY"); got != "test-plugin" {
		t.Errorf("ADJUSTED_BY in the container = %q", got)
	}
	if c.Config.Spec.Resources.MemoryLimit != mem {
		t.Errorf("recorded memory limit = %d, want the adjusted %d", c.Config.Spec.Resources.MemoryLimit, mem)
	}
	sp, err := m.ContainerSpec(c.ID)
	if err != nil || sp.Annotations["test.berth/adjusted"] != "yes" || *sp.Linux.Resources.Memory.Limit != mem {
		t.Errorf("spec after Adjust: %v", err)
	}
	if _, err := os.Stat("/sys/fs/cgroup/hugetlb"); err != nil && len(sp.Linux.Resources.HugepageLimits) != 0 {
		t.Errorf("hugepage limits kept without a hugetlb controller: %v", sp.Linux.Resources.HugepageLimits)
	}

	cfg.Name, cfg.ID = "refused", ""
	cfg.Adjust = func(context.Context, *specs.Spec) error { return errors.New("plugin says no") }
	if _, err := m.CreateContainer(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "plugin says no") {
		t.Fatalf("CreateContainer with a refusing Adjust: %v", err)
	}
	for _, c := range m.ListContainers() {
		if c.Config.Name == "refused" {
			t.Errorf("refused container listed: %s", c.ID)
		}
	}
	cfg.Adjust = nil
	again, err := m.CreateContainer(t.Context(), cfg)
	if err != nil {
		t.Fatalf("the same container again: %v", err)
	}
	if err := m.RemoveContainer(t.Context(), again.ID); err != nil {
		t.Fatal(err)
	}
}
