package monitor

import (
	"encoding/json"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseBundleConfig(t *testing.T) {
	full := func(terminal bool, ns ...specs.LinuxNamespace) []byte {
		b, err := json.Marshal(specs.Spec{
			Version: specs.Version, Root: &specs.Root{Path: "rootfs"},
			Process: &specs.Process{Terminal: terminal, Args: []string{"sh"}, Cwd: "/"},
			Linux:   &specs.Linux{Namespaces: ns, Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name                 string
		config               []byte
		terminal, privatePID bool
	}{
		{"private pid namespace", full(false, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/run/netns/x"}, specs.LinuxNamespace{Type: specs.PIDNamespace}), false, true},
		{"pod pid namespace", full(true, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: "/proc/42/ns/pid"}), true, false},
		{"host pid namespace", full(false, specs.LinuxNamespace{Type: specs.MountNamespace}), false, false},
		{"no linux section", []byte(`{"process":{"terminal":true,"args":["sh"]}}`), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseBundleConfig(tc.config)
			if err != nil {
				t.Fatal(err)
			}
			if c.Process.Terminal != tc.terminal || c.privatePIDNamespace() != tc.privatePID {
				t.Errorf("terminal %v, private pid namespace %v; want %v, %v", c.Process.Terminal, c.privatePIDNamespace(), tc.terminal, tc.privatePID)
			}
		})
	}
	for _, bad := range []string{`{"linux":{}}`, `{"process":`} {
		if _, err := parseBundleConfig([]byte(bad)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parse %s: got %v, want an invalid argument", bad, err)
		}
	}
}
