package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// fixtureRootfs is a tiny image rootfs with critest-like users and groups.
func fixtureRootfs(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs("testdata/rootfs")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptr[T any](v T) *T { return &v }

// podNamespaces is what a container of a normal pod gets on a cgroup v1 host.
var podNamespaces = Namespaces{
	Network: Namespace{Mode: NamespaceJoin, Path: "/run/berth/netns/pod1"},
	IPC:     Namespace{Mode: NamespaceJoin, Path: "/run/berth/ipcns/pod1"},
	UTS:     Namespace{Mode: NamespaceJoin, Path: "/run/berth/utsns/pod1"},
	Cgroup:  Namespace{Mode: NamespaceHost},
}

func TestGenerateGolden(t *testing.T) {
	rootfs := fixtureRootfs(t)
	localProfile, err := filepath.Abs("testdata/seccomp-localhost.json")
	if err != nil {
		t.Fatal(err)
	}
	base := func(mod func(*Container)) Container {
		c := Container{
			ID:          "c1",
			Args:        []string{"sh", "-c", "sleep 1000"},
			Env:         []string{"PATH=/usr/bin:/bin", "FOO=bar"},
			Rootfs:      rootfs,
			Hostname:    "pod1",
			Namespaces:  podNamespaces,
			CgroupsPath: "/kubepods/pod1/c1",
			Shm:         Shm{Source: "/run/berth/pods/pod1/shm"},
			Files: Files{
				HostsPath:      "/var/lib/berth/pods/pod1/hosts",
				ResolvConfPath: "/var/lib/berth/pods/pod1/resolv.conf",
				HostnamePath:   "/var/lib/berth/pods/pod1/hostname",
			},
		}
		if mod != nil {
			mod(&c)
		}
		return c
	}

	tests := []struct {
		name string
		in   Container
	}{
		// The zero value apart from what is required: every namespace new,
		// no env, root, private /dev/shm.
		{"defaults", Container{Args: []string{"sh"}, Rootfs: rootfs}},
		{"pod-container", base(nil)},
		{"privileged", base(func(c *Container) {
			c.Privileged = true
			c.Capabilities = Capabilities{Drop: []string{"NET_RAW"}} // ignored
			c.Seccomp = Seccomp{Kind: SeccompRuntimeDefault}         // ignored
			c.Devices = []Device{
				{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, FileMode: 0o666},
				{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0, FileMode: 0o660, GID: 6},
			}
		})},
		{"readonly-rootfs", base(func(c *Container) { c.ReadOnlyRootfs = true })},
		{"user-name-merge", base(func(c *Container) {
			c.User = User{Spec: "default-user", SupplementalGroups: []uint32{60000}}
		})},
		{"user-name-strict", base(func(c *Container) {
			c.User = User{Spec: "default-user", SupplementalGroups: []uint32{60000}, GroupsPolicy: GroupsStrict}
		})},
		{"user-uid-run-as-group", base(func(c *Container) {
			// CRI run_as_user 1000 + run_as_group 3000 + supplemental 4000.
			c.User = User{Spec: "1000", GID: ptr[uint32](3000), SupplementalGroups: []uint32{4000}}
		})},
		{"user-name-group", base(func(c *Container) { c.User = User{Spec: "www-data:users"} })},
		{"user-unknown-uid", base(func(c *Container) { c.User = User{Spec: "4242"} })},
		{"caps-add-drop", base(func(c *Container) {
			c.Capabilities = Capabilities{Add: []string{"NET_ADMIN", "cap_sys_time"}, Drop: []string{"CAP_NET_RAW", "kill"}}
		})},
		{"caps-drop-all", base(func(c *Container) {
			c.Capabilities = Capabilities{Add: []string{"NET_BIND_SERVICE"}, Drop: []string{"ALL"}}
		})},
		{"caps-add-all", base(func(c *Container) {
			c.Capabilities = Capabilities{Add: []string{"ALL"}, Drop: []string{"SYS_ADMIN"},
				All: []string{"CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN", "CAP_KILL"}}
		})},
		{"masked-paths", base(func(c *Container) {
			c.MaskedPaths = []string{"/bin/ls"}
			c.ReadonlyPaths = []string{}
		})},
		{"no-new-privileges", base(func(c *Container) { c.NoNewPrivileges = true })},
		{"sysctls", base(func(c *Container) {
			c.Sysctls = map[string]string{
				"kernel.shm_rmid_forced":                    "1",
				"net.ipv4.ip_unprivileged_port_start":       "0",
				"fs.mqueue.msg_max":                         "100",
				"net/ipv4/conf/eth0.100/rp_filter":          "2",
				"kernel.domainname":                         "example.org",
				"net.ipv4.conf.all.route_localnet":          "1",
				"kernel.msgmax":                             "65536",
				"net.ipv6.conf.all.disable_ipv6":            "1",
				"net.core.somaxconn":                        "1024",
				"net.ipv4.ping_group_range":                 "0 2147483647",
				"net.ipv4.tcp_syncookies":                   "1",
				"net.ipv4.ip_local_port_range":              "1024 65000",
				"net.ipv4.tcp_keepalive_time":               "600",
				"net.ipv4.tcp_fin_timeout":                  "30",
				"net.ipv4.tcp_keepalive_intvl":              "60",
				"net.ipv4.tcp_keepalive_probes":             "5",
				"net.ipv4.ip_local_reserved_ports":          "30000",
				"net.ipv4.conf.default.rp_filter":           "1",
				"net.ipv4.tcp_tw_reuse":                     "1",
				"net.netfilter.nf_conntrack_tcp_be_liberal": "1",
			}
		})},
		{"seccomp-runtime-default", base(func(c *Container) { c.Seccomp = Seccomp{Kind: SeccompRuntimeDefault} })},
		{"seccomp-unconfined", base(func(c *Container) { c.Seccomp = Seccomp{Kind: SeccompUnconfined} })},
		{"seccomp-localhost", base(func(c *Container) {
			c.Seccomp = Seccomp{Kind: SeccompLocalhost, LocalhostPath: localProfile}
		})},
		{"resources", base(func(c *Container) {
			c.Resources = Resources{
				CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000,
				CpusetCpus: "0-1", CpusetMems: "0",
				MemoryLimit: 64 << 20, PidsLimit: 100,
			}
			c.OOMScoreAdj = ptr(-998) // raised to the floor
			c.MinOOMScoreAdj = 0
			c.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 1024}}
		})},
		{"resources-swap-unlimited", base(func(c *Container) {
			c.Resources = Resources{MemoryLimit: 32 << 20, MemorySwap: ptr[int64](-1)}
			c.OOMScoreAdj = ptr(500)
		})},
		{"hugepages", base(func(c *Container) {
			c.Resources = Resources{HugepageLimits: []HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 0}}}
		})},
		{"unified", base(func(c *Container) {
			c.Resources = Resources{Unified: map[string]string{"memory.high": "50000000", "io.weight": "default 100"}}
			c.Namespaces.Cgroup = Namespace{Mode: NamespacePrivate}
		})},
		{"host-namespaces", base(func(c *Container) {
			c.Namespaces = Namespaces{
				Network: Namespace{Mode: NamespaceHost},
				IPC:     Namespace{Mode: NamespaceHost},
				UTS:     Namespace{Mode: NamespaceHost},
				PID:     Namespace{Mode: NamespaceHost},
				Cgroup:  Namespace{Mode: NamespaceHost},
			}
			c.Shm = Shm{Source: "/dev/shm"}
			c.Hostname = "node1"
		})},
		{"pod-pid-namespace", base(func(c *Container) {
			c.Namespaces.PID = Namespace{Mode: NamespaceJoin, Path: "/proc/4242/ns/pid"}
		})},
		{"user-namespace", base(func(c *Container) {
			c.Namespaces.User = &UserNamespace{
				Path:        "/run/berth/userns/pod1",
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}},
				GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}},
			}
			c.Mounts = []Mount{{
				Source: "/var/lib/kubelet/pods/p/volumes/data", Destination: "/data",
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}},
				GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}},
			}}
		})},
		{"mounts", base(func(c *Container) {
			c.Mounts = []Mount{
				// Deliberately children before parents: the output must
				// mount parents first.
				{Source: "/host/a/b", Destination: "/mnt/a/b", ReadOnly: true},
				{Source: "/host/a", Destination: "/mnt/a", Propagation: PropagationHostToContainer},
				{Source: "/host/rro", Destination: "/mnt/rro", ReadOnly: true, RecursiveReadOnly: true},
				{Source: "/host/shared", Destination: "/mnt/shared", Propagation: PropagationBidirectional, Options: []string{"nosuid", "ro"}},
				{Source: "tmpfs", Destination: "/tmp", Type: "tmpfs", Options: []string{"nosuid", "size=1m"}},
				// Replaces the pod's /etc/hosts.
				{Source: "/custom/hosts", Destination: "/etc/hosts", ReadOnly: true},
				// Image volume.
				{Source: "/var/lib/berth/layers/abc/fs/sub", Destination: "/image-vol", ReadOnly: true},
			}
		})},
		{"dev-mount-replaces-dev-defaults", base(func(c *Container) {
			c.Mounts = []Mount{{Source: "/dev", Destination: "/dev"}}
		})},
		{"devices-terminal-apparmor-ignored", base(func(c *Container) {
			c.Terminal = true
			c.Devices = []Device{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229, Permissions: "rw"}}
			c.Annotations = map[string]string{"io.kubernetes.cri.container-type": "container"}
			c.WorkingDir = "/work"
			c.AppArmor = AppArmor{Kind: AppArmorRuntimeDefault}
		})},
	}

	names := map[string]bool{}
	for _, tc := range tests {
		if names[tc.name] {
			t.Fatalf("duplicate case %q", tc.name)
		}
		names[tc.name] = true
		t.Run(tc.name, func(t *testing.T) {
			if strings.Contains(tc.name, "apparmor") && AppArmorEnabled() {
				t.Skip("this host has AppArmor; the golden output assumes a kernel without it")
			}
			sp, err := Generate(tc.in)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			got, err := json.MarshalIndent(sp, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			// The fixture rootfs path depends on the checkout.
			got = bytes.ReplaceAll(got, []byte(rootfs), []byte("/ROOTFS"))
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file (run go test ./runtime/spec -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("spec differs from %s (rerun with -update if intended):\n%s", golden, lineDiff(string(want), string(got)))
			}
		})
	}
}

// lineDiff shows the first lines that differ, enough to see what changed.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			shown++
		}
	}
	return b.String()
}

// TestGenerateSemantics checks the properties the golden files encode, so
// that a careless -update cannot bless a wrong spec.
func TestGenerateSemantics(t *testing.T) {
	rootfs := fixtureRootfs(t)
	gen := func(t *testing.T, c Container) *specs.Spec {
		t.Helper()
		if c.Rootfs == "" {
			c.Rootfs = rootfs
		}
		if c.Args == nil {
			c.Args = []string{"sh"}
		}
		sp, err := Generate(c)
		if err != nil {
			t.Fatalf("Generate: %v", err)
		}
		return sp
	}

	t.Run("default capabilities are containerd's 14", func(t *testing.T) {
		sp := gen(t, Container{})
		caps := sp.Process.Capabilities
		if len(caps.Bounding) != 14 || !slices.Equal(caps.Bounding, caps.Effective) || !slices.Equal(caps.Bounding, caps.Permitted) {
			t.Fatalf("capabilities = %+v", caps)
		}
		if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
			t.Fatalf("inheritable/ambient must be empty: %+v", caps)
		}
		if slices.Contains(caps.Bounding, "CAP_SYS_ADMIN") {
			t.Fatal("CAP_SYS_ADMIN in the default set")
		}
	})

	t.Run("drop all leaves a non-nil empty set", func(t *testing.T) {
		sp := gen(t, Container{Capabilities: Capabilities{Drop: []string{"all"}}})
		// A nil Capabilities would make runc keep root's full set.
		if sp.Process.Capabilities == nil || len(sp.Process.Capabilities.Bounding) != 0 {
			t.Fatalf("capabilities = %+v", sp.Process.Capabilities)
		}
	})

	t.Run("privileged uses Capabilities.All and unmasks", func(t *testing.T) {
		sp := gen(t, Container{Privileged: true, Capabilities: Capabilities{All: []string{"chown", "CAP_KILL"}}, Seccomp: Seccomp{Kind: SeccompRuntimeDefault}})
		if !slices.Equal(sp.Process.Capabilities.Bounding, []string{"CAP_CHOWN", "CAP_KILL"}) {
			t.Fatalf("bounding = %v", sp.Process.Capabilities.Bounding)
		}
		if sp.Linux.MaskedPaths != nil || sp.Linux.ReadonlyPaths != nil || sp.Linux.Seccomp != nil {
			t.Fatalf("privileged spec keeps restrictions: masked=%v ro=%v seccomp=%v", sp.Linux.MaskedPaths, sp.Linux.ReadonlyPaths, sp.Linux.Seccomp != nil)
		}
		for _, m := range sp.Mounts {
			if (m.Destination == "/sys" || m.Destination == "/sys/fs/cgroup") && slices.Contains(m.Options, "ro") {
				t.Fatalf("%s read-only in a privileged container", m.Destination)
			}
		}
		if d := sp.Linux.Resources.Devices; len(d) != 1 || !d[0].Allow || d[0].Access != "rwm" {
			t.Fatalf("device cgroup = %+v, want allow all", d)
		}
	})

	t.Run("runtime default seccomp follows capabilities", func(t *testing.T) {
		allows := func(sp *specs.Spec, name string) bool {
			for _, s := range sp.Linux.Seccomp.Syscalls {
				if s.Action == specs.ActAllow && len(s.Args) == 0 && slices.Contains(s.Names, name) {
					return true
				}
			}
			return false
		}
		plain := gen(t, Container{Seccomp: Seccomp{Kind: SeccompRuntimeDefault}})
		if plain.Linux.Seccomp == nil || plain.Linux.Seccomp.DefaultAction != specs.ActErrno {
			t.Fatalf("seccomp = %+v", plain.Linux.Seccomp)
		}
		if !allows(plain, "read") || allows(plain, "mount") {
			t.Fatalf("default profile: read allowed=%v, mount allowed=%v", allows(plain, "read"), allows(plain, "mount"))
		}
		admin := gen(t, Container{Seccomp: Seccomp{Kind: SeccompRuntimeDefault}, Capabilities: Capabilities{Add: []string{"SYS_ADMIN"}}})
		if !allows(admin, "mount") {
			t.Fatal("CAP_SYS_ADMIN container may not mount under the default profile")
		}
	})

	t.Run("oom score floor", func(t *testing.T) {
		sp := gen(t, Container{OOMScoreAdj: ptr(-998), MinOOMScoreAdj: -500})
		if *sp.Process.OOMScoreAdj != -500 {
			t.Fatalf("oom score = %d, want -500", *sp.Process.OOMScoreAdj)
		}
		sp = gen(t, Container{OOMScoreAdj: ptr(900), MinOOMScoreAdj: -500})
		if *sp.Process.OOMScoreAdj != 900 {
			t.Fatalf("oom score = %d, want 900", *sp.Process.OOMScoreAdj)
		}
		if sp := gen(t, Container{}); sp.Process.OOMScoreAdj != nil {
			t.Fatalf("oom score set without a request: %d", *sp.Process.OOMScoreAdj)
		}
	})

	t.Run("memory+swap defaults to the memory limit unless the host has no swap accounting", func(t *testing.T) {
		sp := gen(t, Container{Resources: Resources{MemoryLimit: 1 << 20}})
		if m := sp.Linux.Resources.Memory; m == nil || m.Swap == nil || *m.Swap != 1<<20 {
			t.Fatalf("memory = %+v, want swap 1 MiB", m)
		}
		sp = gen(t, Container{Resources: Resources{MemoryLimit: 1 << 20, NoSwapLimit: true}})
		if m := sp.Linux.Resources.Memory; m == nil || *m.Limit != 1<<20 || m.Swap != nil {
			t.Fatalf("memory = %+v, want a limit and no swap", m)
		}
		_, err := Generate(Container{Args: []string{"true"}, Rootfs: t.TempDir(), Resources: Resources{MemoryLimit: 1 << 20, MemorySwap: ptr[int64](2 << 20), NoSwapLimit: true}})
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("swap limit with NoSwapLimit: %v, want InvalidArgument", err)
		}
	})

	t.Run("hostname only in a private uts namespace", func(t *testing.T) {
		if sp := gen(t, Container{Hostname: "h"}); sp.Hostname != "h" || !slices.Contains(sp.Process.Env, "HOSTNAME=h") {
			t.Fatalf("private uts: hostname=%q env=%v", sp.Hostname, sp.Process.Env)
		}
		sp := gen(t, Container{Hostname: "h", Namespaces: podNamespaces})
		if sp.Hostname != "" || !slices.Contains(sp.Process.Env, "HOSTNAME=h") {
			t.Fatalf("pod uts: hostname=%q env=%v", sp.Hostname, sp.Process.Env)
		}
	})

	t.Run("image env wins over defaults", func(t *testing.T) {
		sp := gen(t, Container{Env: []string{"PATH=/x", "TERM=vt100"}, Terminal: true})
		if slices.Contains(sp.Process.Env, defaultPathEnv) || slices.Contains(sp.Process.Env, "TERM=xterm") {
			t.Fatalf("env = %v", sp.Process.Env)
		}
	})

	t.Run("mount parents first and rootfs propagation", func(t *testing.T) {
		sp := gen(t, Container{Mounts: []Mount{
			{Source: "/h/a/b/c", Destination: "/a/b/c"},
			{Source: "/h/a", Destination: "/a", Propagation: PropagationHostToContainer},
		}})
		var order []string
		for _, m := range sp.Mounts {
			if strings.HasPrefix(m.Destination, "/a") {
				order = append(order, m.Destination)
			}
		}
		if !slices.Equal(order, []string{"/a", "/a/b/c"}) {
			t.Fatalf("order = %v", order)
		}
		if sp.Linux.RootfsPropagation != "rslave" {
			t.Fatalf("rootfs propagation = %q, want rslave", sp.Linux.RootfsPropagation)
		}
	})
}

func TestGenerateErrors(t *testing.T) {
	rootfs := fixtureRootfs(t)
	ok := Container{Args: []string{"sh"}, Rootfs: rootfs}
	tests := []struct {
		name    string
		mod     func(*Container)
		class   error
		message string
	}{
		{"no args", func(c *Container) { c.Args = nil }, errdefs.ErrInvalidArgument, "no command"},
		{"relative rootfs", func(c *Container) { c.Rootfs = "rootfs" }, errdefs.ErrInvalidArgument, "not an absolute path"},
		{"unknown capability add", func(c *Container) { c.Capabilities.Add = []string{"CAP_FLY"} }, errdefs.ErrInvalidArgument, `unknown capability "CAP_FLY"`},
		{"unknown capability drop", func(c *Container) { c.Capabilities.Drop = []string{"teleport"} }, errdefs.ErrInvalidArgument, `unknown capability "teleport"`},
		{"net sysctl in host network", func(c *Container) {
			c.Namespaces.Network = Namespace{Mode: NamespaceHost}
			c.Sysctls = map[string]string{"net.ipv4.ip_forward": "1"}
		}, errdefs.ErrInvalidArgument, "needs the container's own network namespace"},
		{"ipc sysctl in host ipc", func(c *Container) {
			c.Namespaces.IPC = Namespace{Mode: NamespaceHost}
			c.Sysctls = map[string]string{"kernel.shmmax": "1"}
		}, errdefs.ErrInvalidArgument, "own ipc namespace"},
		{"hostname sysctl", func(c *Container) { c.Sysctls = map[string]string{"kernel.hostname": "x"} }, errdefs.ErrInvalidArgument, "set the hostname instead"},
		{"user sysctl without userns", func(c *Container) { c.Sysctls = map[string]string{"user.max_user_namespaces": "0"} }, errdefs.ErrInvalidArgument, "needs a user namespace"},
		{"uts sysctl in host uts", func(c *Container) {
			c.Namespaces.UTS = Namespace{Mode: NamespaceHost}
			c.Sysctls = map[string]string{"kernel.domainname": "x"}
		}, errdefs.ErrInvalidArgument, "own uts namespace"},
		{"non-namespaced sysctl", func(c *Container) { c.Sysctls = map[string]string{"vm.swappiness": "1"} }, errdefs.ErrInvalidArgument, "not a namespaced sysctl"},
		{"user not found", func(c *Container) { c.User.Spec = "alice" }, errdefs.ErrNotFound, `no user "alice" in the image's /etc/passwd`},
		{"group not found", func(c *Container) { c.User.Spec = "default-user:wizards" }, errdefs.ErrNotFound, `no group "wizards"`},
		{"uid out of range", func(c *Container) { c.User.Spec = "4294967296" }, errdefs.ErrInvalidArgument, "out of range"},
		{"rro without ro", func(c *Container) {
			c.Mounts = []Mount{{Source: "/a", Destination: "/a", RecursiveReadOnly: true}}
		}, errdefs.ErrInvalidArgument, "needs read-only"},
		{"rro with rslave", func(c *Container) {
			c.Mounts = []Mount{{Source: "/a", Destination: "/a", ReadOnly: true, RecursiveReadOnly: true, Propagation: PropagationHostToContainer}}
		}, errdefs.ErrInvalidArgument, "needs private propagation"},
		{"relative mount destination", func(c *Container) { c.Mounts = []Mount{{Source: "/a", Destination: "a"}} }, errdefs.ErrInvalidArgument, "not absolute"},
		{"join without path", func(c *Container) { c.Namespaces.PID = Namespace{Mode: NamespaceJoin} }, errdefs.ErrInvalidArgument, "pid namespace"},
		{"userns without mappings", func(c *Container) { c.Namespaces.User = &UserNamespace{} }, errdefs.ErrInvalidArgument, "mappings are required"},
		{"seccomp localhost missing", func(c *Container) {
			c.Seccomp = Seccomp{Kind: SeccompLocalhost, LocalhostPath: "/nonexistent/profile.json"}
		}, errdefs.ErrNotFound, "load seccomp profile"},
		{"seccomp localhost relative", func(c *Container) {
			c.Seccomp = Seccomp{Kind: SeccompLocalhost, LocalhostPath: "profile.json"}
		}, errdefs.ErrInvalidArgument, "not an absolute path"},
		{"seccomp localhost not json", func(c *Container) {
			p := filepath.Join(t.TempDir(), "bad.json")
			if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
			c.Seccomp = Seccomp{Kind: SeccompLocalhost, LocalhostPath: p}
		}, errdefs.ErrInvalidArgument, "load seccomp profile"},
		{"bad device permissions", func(c *Container) {
			c.Devices = []Device{{Path: "/dev/x", Type: "c", Major: 1, Minor: 1, Permissions: "rwx"}}
		}, errdefs.ErrInvalidArgument, "device permissions"},
		{"swap below memory", func(c *Container) {
			c.Resources = Resources{MemoryLimit: 100, MemorySwap: ptr[int64](50)}
		}, errdefs.ErrInvalidArgument, "below memory limit"},
		{"oom score out of range", func(c *Container) { c.OOMScoreAdj = ptr(1001) }, errdefs.ErrInvalidArgument, "oom score adj"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			c.ID = "c1"
			tc.mod(&c)
			sp, err := Generate(c)
			if err == nil {
				t.Fatalf("Generate succeeded: %+v", sp)
			}
			if !errors.Is(err, tc.class) {
				t.Fatalf("error %q is not %v", err, tc.class)
			}
			if !strings.Contains(err.Error(), tc.message) || !strings.HasPrefix(err.Error(), "generate spec for container c1: ") {
				t.Fatalf("error %q does not say %q with the container id", err, tc.message)
			}
		})
	}
}
