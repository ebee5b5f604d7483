package importcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/berth-dev/berth"

// rules are the boundaries of DESIGN.md: runtime, cni and imagestore never
// import each other or cri; cri and the standalone fronts (engine,
// dockerapi) never import each other; only imagestore talks to registries (ggcr's
// remote); only runtime (and berth-runc, the shim's libcontainer helper)
// links libcontainer, and the long-lived berth-shim monitor never does,
// not even through another package; only cni
// imports libcni.
func rules() []Rule {
	var rs []Rule
	engines := []string{"runtime", "cni", "imagestore"}
	for _, from := range engines {
		for _, to := range append(slices.Clone(engines), "cri") {
			if to == from {
				continue
			}
			rs = append(rs, Rule{
				From:   module + "/" + from,
				Forbid: module + "/" + to,
				Why:    "runtime, cni and imagestore stay independent of each other and of cri; wire them in daemon/",
			})
		}
	}
	// CRI pods and standalone containers are two owners of one runtime;
	// neither front sees the other's objects.
	for _, pair := range [][2]string{{"cri", "engine"}, {"cri", "dockerapi"}, {"engine", "cri"}, {"dockerapi", "cri"}} {
		rs = append(rs, Rule{
			From:   module + "/" + pair[0],
			Forbid: module + "/" + pair[1],
			Why:    "cri and the standalone fronts (engine, dockerapi) never import each other; wire them in daemon/",
		})
	}
	rs = append(rs,
		Rule{
			From:   module,
			Forbid: "github.com/google/go-containerregistry/pkg/v1/remote",
			Except: []string{module + "/imagestore", module + "/internal/testimage", module + "/hack", module + "/test"},
			Direct: true,
			Why:    "only imagestore talks to registries",
		},
		Rule{
			From:   module,
			Forbid: "github.com/opencontainers/runc/libcontainer",
			Except: []string{module + "/runtime", module + "/cmd/berth-runc"},
			Direct: true,
			Why:    "only runtime and berth-runc link libcontainer",
		},
		Rule{
			From:   module + "/cmd/berth-shim",
			Forbid: "github.com/opencontainers/runc",
			Why:    "the long-lived monitor stays small: libcontainer runs in the short-lived berth-runc",
		},
		Rule{
			From:   module + "/runtime/shim/monitor",
			Forbid: "github.com/opencontainers/runc",
			Why:    "the long-lived monitor stays small: libcontainer runs in the short-lived berth-runc",
		},
		Rule{
			From:   module,
			Forbid: "github.com/containernetworking/cni/libcni",
			Except: []string{module + "/cni"},
			Direct: true,
			Why:    "only cni imports libcni",
		},
	)
	return rs
}

// listPackages runs `go list -deps` over the whole module. -e keeps going
// past packages that do not compile yet: their imports still count.
func listPackages(t *testing.T) []Package {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("find the module root: %v", err)
	}
	cmd := exec.Command("go", "list", "-e", "-json=ImportPath,Imports,Deps", "./...")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	var pkgs []Package
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p Package
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestImportBoundaries(t *testing.T) {
	pkgs := listPackages(t)
	if !slices.ContainsFunc(pkgs, func(p Package) bool { return p.ImportPath == module+"/internal/importcheck" }) {
		t.Fatalf("go list did not list this package; got %d packages", len(pkgs))
	}
	for _, v := range Violations(pkgs, rules()) {
		t.Error(v)
	}
}

func TestViolations(t *testing.T) {
	const remote = "github.com/google/go-containerregistry/pkg/v1/remote"
	tests := []struct {
		name string
		pkg  Package
		want int
	}{
		{"imagestore may use remote", Package{ImportPath: module + "/imagestore/pull", Imports: []string{remote}, Deps: []string{remote}}, 0},
		{"cri must not use remote", Package{ImportPath: module + "/cri", Imports: []string{remote}, Deps: []string{remote}}, 1},
		{"cri may use remote through imagestore", Package{ImportPath: module + "/cri", Imports: []string{module + "/imagestore"}, Deps: []string{module + "/imagestore", remote}}, 0},
		{"runtime must not reach cni even indirectly", Package{ImportPath: module + "/runtime/spec", Imports: []string{module + "/internal/x"}, Deps: []string{module + "/internal/x", module + "/cni"}}, 1},
		{"imagestore must not import cri", Package{ImportPath: module + "/imagestore", Imports: []string{module + "/cri/convert"}, Deps: []string{module + "/cri/convert"}}, 1},
		{"cni may import itself", Package{ImportPath: module + "/cni/portmap", Imports: []string{module + "/cni"}, Deps: []string{module + "/cni"}}, 0},
		{"prefix is not a path prefix", Package{ImportPath: module + "/runtimex", Deps: []string{module + "/cri"}}, 0},
		{"libcni only in cni", Package{ImportPath: module + "/daemon", Imports: []string{"github.com/containernetworking/cni/libcni"}}, 1},
		{"libcontainer in berth-runc", Package{ImportPath: module + "/cmd/berth-runc", Imports: []string{"github.com/opencontainers/runc/libcontainer"}}, 0},
		{"libcontainer in the monitor binary", Package{ImportPath: module + "/cmd/berth-shim", Imports: []string{"github.com/opencontainers/runc/libcontainer"}, Deps: []string{"github.com/opencontainers/runc/libcontainer"}}, 2},
		{"libcontainer under the monitor", Package{ImportPath: module + "/runtime/shim/monitor", Deps: []string{"github.com/opencontainers/runc/libcontainer/utils"}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Violations([]Package{tt.pkg}, rules())
			if len(got) != tt.want {
				t.Errorf("violations = %q, want %d", got, tt.want)
			}
		})
	}
}
