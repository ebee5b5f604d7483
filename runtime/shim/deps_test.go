package shim_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestDependencies keeps berthd's side free of libcontainer and cgo, the
// long-lived monitor (berth-shim) free of libcontainer, cgroup libraries
// and cgo (its pages are paid for every running container), and the
// libcontainer helper (berth-runc) free of the heavy libraries whose init
// would be paid on every container start and exec.
func TestDependencies(t *testing.T) {
	testutil.LookPath(t, "go", "the go toolchain")
	tests := []struct {
		pkg       string
		tags      string
		cgo       string
		forbidden []string
	}{
		{"github.com/berth-dev/berth/runtime/shim", "", "0", []string{"github.com/opencontainers/runc", "github.com/opencontainers/cgroups", "github.com/containerd/console"}},
		{"github.com/berth-dev/berth/cmd/berth-shim", "", "0", []string{"github.com/opencontainers/runc", "github.com/opencontainers/cgroups", "github.com/sirupsen/logrus", "runtime/cgo", "google.golang.org/grpc", "github.com/google/go-containerregistry", "github.com/containernetworking", "k8s.io/", "go.etcd.io/bbolt", "net/http"}},
		{"github.com/berth-dev/berth/cmd/berth-runc", "seccomp", "1", []string{"google.golang.org/grpc", "github.com/google/go-containerregistry", "github.com/containernetworking", "k8s.io/", "go.etcd.io/bbolt", "net/http"}},
	}
	for _, tt := range tests {
		cmd := exec.Command("go", "list", "-tags", tt.tags, "-deps", tt.pkg)
		// As make build builds them: berthd and the monitor without cgo.
		cmd.Env = append(os.Environ(), "CGO_ENABLED="+tt.cgo)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list %s: %v", tt.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range tt.forbidden {
				if dep == f || strings.HasPrefix(dep, strings.TrimSuffix(f, "/")+"/") || (strings.HasSuffix(f, "/") && strings.HasPrefix(dep, f)) {
					t.Errorf("%s depends on %s", tt.pkg, dep)
				}
			}
		}
	}
}
