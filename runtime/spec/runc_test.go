//go:build cgo

package spec

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs/validate"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestGoldenSpecsAcceptedByRunc feeds every golden spec through the same
// conversion and validation libcontainer runs before it creates a
// container, so a spec that runc would reject fails here, without root.
func TestGoldenSpecsAcceptedByRunc(t *testing.T) {
	rootfs := fixtureRootfs(t)
	goldens, err := filepath.Glob("testdata/*.golden.json")
	if err != nil || len(goldens) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	fakeNetns := filepath.Join(t.TempDir(), "netns")
	if err := os.WriteFile(fakeNetns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat("/sys/fs/cgroup/cgroup.controllers")
	cgroup2 := err == nil
	for _, g := range goldens {
		name := strings.TrimSuffix(filepath.Base(g), ".golden.json")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(g)
			if err != nil {
				t.Fatal(err)
			}
			if name == "unified" && !cgroup2 {
				t.Skip("runc refuses unified resources on a cgroup v1 host")
			}
			b = bytes.ReplaceAll(b, []byte("/ROOTFS"), []byte(rootfs))
			// runc opens joined namespaces while validating: point them at
			// a stand-in file (checked against the host netns by inode).
			b = bytes.ReplaceAll(b, []byte("/run/berth/netns/pod1"), []byte(fakeNetns))
			var sp specs.Spec
			if err := json.Unmarshal(b, &sp); err != nil {
				t.Fatal(err)
			}
			for i, ns := range sp.Linux.Namespaces {
				if ns.Type == specs.UserNamespace {
					// runc enters a joined user namespace to read its
					// mappings; without a pinned one, check the
					// mappings and idmapped mounts on a new one.
					sp.Linux.Namespaces[i].Path = ""
				}
			}
			cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
				CgroupName: "berth-spec-test",
				Spec:       &sp,
			})
			if err != nil {
				t.Fatalf("runc cannot convert the spec: %v", err)
			}
			if err := validate.Validate(cfg); err != nil {
				t.Fatalf("runc rejects the spec: %v", err)
			}
		})
	}
}
