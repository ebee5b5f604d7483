//go:build cgo

package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/opencontainers/cgroups/devices"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	_ "github.com/opencontainers/runc/libcontainer/nsenter"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestMain dispatches libcontainer's init: libcontainer re-executes this
// test binary as the container's first process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
		panic("libcontainer.Init returned")
	}
	os.Exit(m.Run())
}

// TestGeneratedSpecRuns runs a generated spec with libcontainer and checks,
// from inside the container, what the spec promised: user and groups from
// the image, capabilities, the OOM score floor, seccomp, masked paths, a
// read-only rootfs, a read-only bind mount and a namespaced sysctl.
func TestGeneratedSpecRuns(t *testing.T) {
	testutil.RequireRoot(t, "creates namespaces, mounts and cgroups")
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testutil.Missing(t, "needs a static /bin/busybox on the host (apt-get install busybox-static): %v", err)
	}

	dir, rootfs := busyboxRootfs(t, busybox)
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "f"), []byte("hello-from-host\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	caps, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	floor, err := CurrentOOMScoreAdj()
	if err != nil {
		t.Fatal(err)
	}
	// Without -tags seccomp libcontainer refuses a seccomp profile: the
	// rest is checked, and the test stops at the end as a missing
	// prerequisite (make test-unit builds with the tag).
	withSeccomp := seccomp.Enabled
	sc := Seccomp{}
	if withSeccomp {
		sc = Seccomp{Kind: SeccompRuntimeDefault}
	}
	id := fmt.Sprintf("berth-spec-test-%d", os.Getpid())

	script := strings.Join([]string{
		"echo uid=$(id -u)",
		"echo groups=$(id -G)",
		"echo oom=$(cat /proc/self/oom_score_adj)",
		"grep -E '^(CapEff|Seccomp|NoNewPrivs):' /proc/self/status | tr -s '\\t ' ' '",
		"echo interrupts=$(wc -c < /proc/interrupts)",
		"touch /rootfs-write 2>/dev/null && echo rootfs=rw || echo rootfs=ro",
		"touch /data/g 2>/dev/null && echo data=rw || echo data=ro",
		"echo data=$(cat /data/f)",
		"echo shm_rmid_forced=$(cat /proc/sys/kernel/shm_rmid_forced)",
		"echo hostname=$(hostname)",
		"echo pid=$$",
	}, "; ")
	sp, err := Generate(Container{
		ID:              id,
		Args:            []string{"/bin/busybox", "sh", "-c", script},
		Rootfs:          rootfs,
		ReadOnlyRootfs:  true,
		Hostname:        "spec-test",
		User:            User{Spec: "default-user", SupplementalGroups: []uint32{60000}},
		Capabilities:    Capabilities{All: caps, Drop: []string{"NET_RAW"}},
		NoNewPrivileges: true,
		Seccomp:         sc,
		OOMScoreAdj:     ptr(-998),
		MinOOMScoreAdj:  floor,
		Sysctls:         map[string]string{"kernel.shm_rmid_forced": "1"},
		Mounts:          []Mount{{Source: data, Destination: "/data", ReadOnly: true}},
		Namespaces:      Namespaces{Cgroup: Namespace{Mode: NamespaceHost}},
		CgroupsPath:     "/" + id,
		Resources:       Resources{PidsLimit: 64},
	})
	if err != nil {
		t.Fatal(err)
	}
	out := runSpec(t, filepath.Join(dir, "state"), id, sp)

	// The host's file is not empty, so an empty read proves the mask.
	if b, err := os.ReadFile("/proc/interrupts"); err != nil || len(b) == 0 {
		t.Fatalf("host /proc/interrupts is empty or missing (%v): the mask check would prove nothing", err)
	}
	want := []string{
		"uid=1000",
		"groups=1000 50000 50001 60000",
		fmt.Sprintf("oom=%d", max(-998, floor)),
		"NoNewPrivs: 1",
		"interrupts=0", // masked with /dev/null
		"rootfs=ro",
		"data=ro",
		"data=hello-from-host",
		"shm_rmid_forced=1",
		"hostname=spec-test",
		"pid=1",
	}
	if withSeccomp {
		want = append(want, "Seccomp: 2")
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("container output lacks %q:\n%s", w, out)
		}
	}
	// The process is not root, so its effective set is empty after exec;
	// what matters is that the run succeeded with the bounding set asked.
	if !strings.Contains(out, "CapEff: 0000000000000000") {
		t.Errorf("non-root process has effective capabilities:\n%s", out)
	}
	if !withSeccomp {
		testutil.Missing(t, "test binary built without -tags seccomp: the seccomp filter (Seccomp: 2) was not checked; run make test-unit")
	}
}

// runSpec creates, runs and destroys a container from sp and returns its
// combined output.
func runSpec(t *testing.T, stateRoot, id string, sp *specs.Spec) string {
	t.Helper()
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: sp})
	if err != nil {
		t.Fatalf("convert spec: %v", err)
	}
	c, err := libcontainer.Create(stateRoot, id, cfg)
	if err != nil {
		t.Fatalf("create container: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Destroy(); err != nil {
			t.Errorf("destroy container: %v", err)
		}
		removeCgroupDirs(t, cfg)
	})
	var buf bytes.Buffer
	p := &libcontainer.Process{
		Args:             sp.Process.Args,
		Env:              sp.Process.Env,
		Cwd:              sp.Process.Cwd,
		UID:              int(sp.Process.User.UID),
		GID:              int(sp.Process.User.GID),
		NoNewPrivileges:  &sp.Process.NoNewPrivileges,
		Stdout:           &buf,
		Stderr:           &buf,
		Init:             true,
		Capabilities:     &configs.Capabilities{Bounding: sp.Process.Capabilities.Bounding, Effective: sp.Process.Capabilities.Effective, Permitted: sp.Process.Capabilities.Permitted},
		AdditionalGroups: toInts(sp.Process.User.AdditionalGids),
	}
	if err := c.Run(p); err != nil {
		t.Fatalf("run container: %v\n%s", err, buf.String())
	}
	st, err := p.Wait()
	if err != nil || !st.Success() {
		t.Fatalf("container process: %v %v\n%s", st, err, buf.String())
	}
	return buf.String()
}

// removeCgroupDirs removes what Destroy leaves behind on cgroup v1: the
// container's directory in hierarchies libcontainer does not manage.
func removeCgroupDirs(t *testing.T, cfg *configs.Config) {
	t.Helper()
	path := cfg.Cgroups.Path
	if path == "" {
		return
	}
	entries, err := os.ReadDir("/sys/fs/cgroup")
	if err != nil {
		return
	}
	for _, e := range entries {
		d := filepath.Join("/sys/fs/cgroup", e.Name(), path)
		if e.Name() == "cgroup.controllers" {
			continue
		}
		if err := unix.Rmdir(d); err != nil && err != unix.ENOENT && err != unix.ENOTDIR {
			t.Errorf("remove cgroup %s: %v", d, err)
		}
	}
	if err := unix.Rmdir(filepath.Join("/sys/fs/cgroup", path)); err != nil && err != unix.ENOENT {
		t.Logf("remove cgroup %s: %v", path, err)
	}
}

func toInts(in []uint32) []int {
	out := make([]int, len(in))
	for i, v := range in {
		out[i] = int(v)
	}
	return out
}

// busyboxRootfs makes a rootfs holding only a static busybox and the
// fixture /etc/passwd and /etc/group.
func busyboxRootfs(t *testing.T, busybox []byte) (dir, rootfs string) {
	t.Helper()
	dir = t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rootfs = filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "data", "tmp"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "bin", "busybox"), busybox, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "group"} {
		b, err := os.ReadFile(filepath.Join("testdata", "rootfs", "etc", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(rootfs, "etc", f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, rootfs
}

// TestPrivilegedSpecRuns runs a privileged spec built from the daemon's own
// capabilities and the host's devices: it must start, see host devices and
// hold every capability of its creator.
func TestPrivilegedSpecRuns(t *testing.T) {
	testutil.RequireRoot(t, "creates namespaces, mounts and cgroups")
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testutil.Missing(t, "needs a static /bin/busybox on the host (apt-get install busybox-static): %v", err)
	}
	dir, rootfs := busyboxRootfs(t, busybox)
	caps, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	devs, err := HostDevices()
	if err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("berth-spec-priv-%d", os.Getpid())
	sp, err := Generate(Container{
		ID:           id,
		Args:         []string{"/bin/busybox", "sh", "-c", "grep CapEff /proc/self/status | tr -s '\\t ' ' '; test -c /dev/null && echo null=ok; wc -c < /proc/interrupts"},
		Rootfs:       rootfs,
		Privileged:   true,
		Capabilities: Capabilities{All: caps},
		Devices:      devs,
		Namespaces:   Namespaces{Cgroup: Namespace{Mode: NamespaceHost}},
		CgroupsPath:  "/" + id,
		Seccomp:      Seccomp{Kind: SeccompRuntimeDefault}, // ignored: privileged
	})
	if err != nil {
		t.Fatal(err)
	}
	out := runSpec(t, filepath.Join(dir, "state"), id, sp)
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var bnd string
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
			bnd = strings.TrimSpace(v)
		}
	}
	if !strings.Contains(out, "CapEff: "+bnd+"\n") || !strings.Contains(out, "null=ok\n") {
		t.Fatalf("want CapEff %s and /dev/null, got:\n%s", bnd, out)
	}
	if strings.Contains(out, "\n0\n") {
		t.Fatalf("/proc/interrupts masked in a privileged container:\n%s", out)
	}
}
