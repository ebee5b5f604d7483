package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"defaults", Config{ShimBinary: "/bin/berth-shim"}, true},
		{"no shim", Config{}, false},
		{"relative root", Config{ShimBinary: "s", Root: "var/lib"}, false},
		{"long state dir", Config{ShimBinary: "s", StateDir: "/" + strings.Repeat("x", 90)}, false},
		{"driver", Config{ShimBinary: "s", CgroupDriver: "cgroupv3"}, false},
		{"systemd", Config{ShimBinary: "s", CgroupDriver: CgroupDriverSystemd}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.ok != (err == nil) {
				t.Fatalf("Validate() = %v", err)
			}
			if tc.name == "systemd" {
				if !errdefs.IsNotImplemented(err) {
					t.Errorf("systemd driver: %v; want not implemented", err)
				}
				return
			}
			if err != nil && !errdefs.IsInvalidArgument(err) {
				t.Errorf("error class: %v", err)
			}
			if err == nil && (tc.cfg.Root == "" || tc.cfg.StateDir == "" || tc.cfg.CgroupDriver == "") {
				t.Errorf("defaults not filled: %+v", tc.cfg)
			}
		})
	}
}

func TestValidateSandbox(t *testing.T) {
	pod := SandboxNamespaces{}
	host := SandboxNamespaces{Network: NamespaceNode, IPC: NamespaceNode}
	for _, tc := range []struct {
		name  string
		cfg   SandboxConfig
		class func(error) bool
	}{
		{"ok", SandboxConfig{Name: "a", Namespaces: pod, Sysctls: map[string]string{"net.ipv4.ping_group_range": "0 0", "kernel.shmmax": "1", "fs.mqueue.msg_max": "3", "kernel/sem": "1 2 3 4"}}, nil},
		{"no name", SandboxConfig{}, errdefs.IsInvalidArgument},
		{"userns without mappings", SandboxConfig{Name: "a", UserNS: &UserNamespace{}}, errdefs.IsInvalidArgument},
		{"handler", SandboxConfig{Name: "a", RuntimeHandler: "kata"}, errdefs.IsNotFound},
		{"net sysctl on host net", SandboxConfig{Name: "a", Namespaces: host, Sysctls: map[string]string{"net.core.somaxconn": "1"}}, errdefs.IsInvalidArgument},
		{"ipc sysctl on host ipc", SandboxConfig{Name: "a", Namespaces: host, Sysctls: map[string]string{"kernel.msgmax": "1"}}, errdefs.IsInvalidArgument},
		{"not namespaced", SandboxConfig{Name: "a", Sysctls: map[string]string{"vm.swappiness": "1"}}, errdefs.IsInvalidArgument},
		{"pid target", SandboxConfig{Name: "a", Namespaces: SandboxNamespaces{PID: NamespaceTarget}}, errdefs.IsInvalidArgument},
		{"net container", SandboxConfig{Name: "a", Namespaces: SandboxNamespaces{Network: NamespaceContainer}}, errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validateSandbox(&tc.cfg)
			if tc.class == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !tc.class(err) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	ids := map[string]int{"abc1": 1, "abc2": 2, "def": 3, "abd": -4}
	all := func(int) bool { return true }
	if v, err := lookup(ids, "abc1", "x", all); err != nil || v != 1 {
		t.Errorf("exact: %v %v", v, err)
	}
	if v, err := lookup(ids, "d", "x", all); err != nil || v != 3 {
		t.Errorf("prefix: %v %v", v, err)
	}
	if _, err := lookup(ids, "abc", "x", all); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous: %v", err)
	}
	if _, err := lookup(ids, "zz", "x", all); !errdefs.IsNotFound(err) {
		t.Errorf("missing: %v", err)
	}
	if _, err := lookup(ids, "", "x", all); !errdefs.IsNotFound(err) {
		t.Errorf("empty: %v", err)
	}
	// What keep refuses is not there: neither by its ID nor as a second
	// match of a prefix.
	positive := func(v int) bool { return v > 0 }
	if _, err := lookup(ids, "abd", "x", positive); !errdefs.IsNotFound(err) {
		t.Errorf("refused exact: %v", err)
	}
	if v, err := lookup(ids, "abc2", "x", positive); err != nil || v != 2 {
		t.Errorf("kept exact: %v %v", v, err)
	}
	if _, err := lookup(ids, "ab", "x", positive); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ambiguous among kept: %v", err)
	}
	if v, err := lookup(map[string]int{"abc": 1, "abd": -1}, "ab", "x", positive); err != nil || v != 1 {
		t.Errorf("prefix matching one kept and one refused: %v %v", v, err)
	}
}

func TestCappedBuffer(t *testing.T) {
	var b cappedBuffer
	chunk := make([]byte, 1<<20)
	for range 20 {
		if n, err := b.Write(chunk); n != len(chunk) || err != nil {
			t.Fatalf("write: %d %v", n, err)
		}
	}
	if len(b.bytes()) != MaxExecSyncOutput {
		t.Errorf("kept %d bytes", len(b.bytes()))
	}
}

func TestParseNetDev(t *testing.T) {
	in := `Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    4    0     0          0         0     7000      50    3    6    0     0       0          0
`
	got := parseNetDev([]byte(in))
	want := []InterfaceStats{{Name: "eth0", RxBytes: 5000, RxPackets: 40, RxErrors: 2, RxDropped: 4, TxBytes: 7000, TxPackets: 50, TxErrors: 3, TxDropped: 6}}
	if len(got) != 1 || got[0] != want[0] {
		t.Errorf("got %+v", got)
	}
}

func TestUpperDir(t *testing.T) {
	ov := []Mount{{Type: "overlay", Source: "overlay", Options: []string{"index=off", "lowerdir=/l", "upperdir=/u", "workdir=/w"}}}
	if got := upperDir(ov); got != "/u" {
		t.Errorf("overlay: %q", got)
	}
	if got := upperDir([]Mount{{Type: "bind", Source: "/s", Options: []string{"rw", "rbind"}}}); got != "/s" {
		t.Errorf("rw bind: %q", got)
	}
	if got := upperDir([]Mount{{Type: "bind", Source: "/s", Options: []string{"ro", "rbind"}}}); got != "" {
		t.Errorf("ro bind: %q", got)
	}
}

func TestWriteJSONReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "r.json")
	for i := range 3 {
		if err := writeJSON(p, map[string]int{"v": i}); err != nil {
			t.Fatal(err)
		}
	}
	var got map[string]int
	if err := readJSON(p, &got); err != nil || got["v"] != 2 {
		t.Fatalf("read back %v %v", got, err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("temp files left: %v", ents)
	}
	if err := os.WriteFile(p, []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := readJSON(p, &got); !errdefs.IsDataLoss(err) {
		t.Errorf("corrupt record: %v", err)
	}
}

func TestPickShimDirAvoidsCollisions(t *testing.T) {
	m := &Manager{state: &state{cfg: Config{StateDir: t.TempDir()}, containers: map[string]*container{}}}
	id := newID()
	first := m.pickShimDir(id)
	if filepath.Base(first) != id[:12] {
		t.Fatalf("first dir %s", first)
	}
	m.containers["x"] = &container{rec: containerRecord{ShimDir: first}}
	if second := m.pickShimDir(id); second == first || filepath.Base(second) != id[:16] {
		t.Errorf("second dir %s", second)
	}
}

func TestLogConfigValidate(t *testing.T) {
	for _, l := range []LogConfig{{}, {Format: LogFormatJSON, MaxSize: 1, MaxFiles: 3, Compress: true}, {Format: LogFormatLocal, NonBlocking: true}} {
		if err := l.validate(); err != nil {
			t.Errorf("%+v: %v", l, err)
		}
	}
	for _, l := range []LogConfig{{Format: "syslog"}, {MaxSize: -1}, {MaxFiles: -2}, {MaxBuffer: -1}} {
		if err := l.validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%+v: %v, want invalid argument", l, err)
		}
	}
}
