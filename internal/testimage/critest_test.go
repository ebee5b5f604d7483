package testimage

import (
	"archive/tar"
	"os"
	"slices"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/testutil"
)

// critestTestParts stands the host's static busybox in for Debian's dynamic
// one (the assembly is the same; ldd finds no libraries) and /bin/true for
// the two Go programs, whose content does not matter here.
func critestTestParts(t *testing.T) CritestParts {
	t.Helper()
	for _, f := range []string{BusyboxPath, "/usr/bin/ipcs", "/bin/true"} {
		if _, err := os.Stat(f); err != nil {
			testutil.Missing(t, "needs %s on the host (make deps): %v", f, err)
		}
	}
	return CritestParts{Busybox: BusyboxPath, NoNewPrivs: "/bin/true", Pause: "/bin/true"}
}

// critestByRef indexes the images by every upstream reference, failing on
// a reference given twice.
func critestByRef(t *testing.T, imgs []CritestImage) map[string]v1.Image {
	t.Helper()
	out := map[string]v1.Image{}
	for _, ci := range imgs {
		for _, r := range ci.Refs {
			if _, dup := out[r]; dup {
				t.Errorf("%s built twice", r)
			}
			out[r] = ci.Image
		}
	}
	return out
}

func imageID(t *testing.T, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func TestCritestImagesCoverCritestAndKeepIDsApart(t *testing.T) {
	p := critestTestParts(t)
	imgs, err := CritestImages(p)
	if err != nil {
		t.Fatal(err)
	}
	by := critestByRef(t, imgs)
	// Every name critest v1.37.0 pulls with a tag (pkg/validate, pkg/benchmark).
	tools := "gcr.io/k8s-staging-cri-tools/"
	want := []string{
		CritestDefaultImage, CritestWebServerImage,
		"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
		"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
		"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:3.6",
		tools + "hostnet-nginx-amd64:latest",
		tools + "test-image-tag:test", tools + "test-image-tag:all", tools + "test-image-latest:latest",
		tools + "test-image-1:latest", tools + "test-image-2:latest", tools + "test-image-3:latest",
		tools + "test-image-tags:1", tools + "test-image-tags:2", tools + "test-image-tags:3",
		tools + "test-image-user-uid:latest", tools + "test-image-user-username:latest",
		tools + "test-image-user-uid-group:latest", tools + "test-image-user-username-group:latest",
		tools + "test-image-predefined-group:latest", tools + "test-image-digest:latest",
		"public.ecr.aws/docker/library/busybox:1.35.0-glibc", "public.ecr.aws/docker/library/busybox:1-uclibc",
		"public.ecr.aws/docker/library/busybox:1", "public.ecr.aws/docker/library/busybox:1-glibc",
		"public.ecr.aws/docker/library/busybox:1-musl",
	}
	for _, r := range want {
		if by[r] == nil {
			t.Errorf("no image for %s", r)
		}
	}

	same := func(a, b string) bool { return imageID(t, by[a]) == imageID(t, by[b]) }
	if !same("registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9") {
		t.Error("pause:3.9 differs between registry.k8s.io and k8s.gcr.io")
	}
	if same("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.6") {
		t.Error("pause:3.6 shares pause:3.9's ID: removing 3.9 by ID would delete the sandbox image")
	}
	if !same(tools+"test-image-tags:1", tools+"test-image-tags:3") {
		t.Error("test-image-tags:1 and :3 must be one image")
	}
	// Images that specs remove by ID must not share it with another image.
	distinct := []string{CritestDefaultImage, tools + "test-image-tag:test", tools + "test-image-tag:all",
		tools + "test-image-latest:latest", tools + "test-image-1:latest", tools + "test-image-2:latest",
		tools + "test-image-3:latest", tools + "test-image-tags:1", tools + "test-image-digest:latest",
		"public.ecr.aws/docker/library/busybox:1.35.0-glibc", "public.ecr.aws/docker/library/busybox:1-uclibc",
		"public.ecr.aws/docker/library/busybox:1", "public.ecr.aws/docker/library/busybox:1-glibc",
		"public.ecr.aws/docker/library/busybox:1-musl", "registry.k8s.io/pause:3.6", "registry.k8s.io/pause:3.9"}
	seen := map[string]string{}
	for _, r := range distinct {
		id := imageID(t, by[r])
		if o, ok := seen[id]; ok {
			t.Errorf("%s and %s share ID %s", r, o, id)
		}
		seen[id] = r
	}

	users := map[string]string{"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
		"test-image-predefined-group": "1000"}
	for n, u := range users {
		cf, err := by[tools+n+":latest"].ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Config.User != u {
			t.Errorf("%s: User %q, want %q", n, cf.Config.User, u)
		}
	}

	// Rebuilding gives the same digests: a registry re-push is a no-op and
	// image IDs are stable across runs.
	again, err := CritestImages(p)
	if err != nil {
		t.Fatal(err)
	}
	for r, img := range critestByRef(t, again) {
		d1, _ := by[r].Digest()
		d2, _ := img.Digest()
		if d1 != d2 {
			t.Errorf("%s: digest %s then %s", r, d1, d2)
		}
	}
}

func TestCritestBaseLayout(t *testing.T) {
	p := critestTestParts(t)
	imgs, err := CritestImages(p)
	if err != nil {
		t.Fatal(err)
	}
	by := critestByRef(t, imgs)
	layers, err := by[CritestDefaultImage].Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("default image layers: %d, %v", len(layers), err)
	}
	m := members(t, layers[0])
	// /bin/ls must be its own directory entry (a hard link), so that masking
	// it does not mask the shell.
	if h := m["bin/ls"]; h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
		t.Errorf("bin/ls = %+v, want a hard link to bin/busybox", h)
	}
	for _, f := range []string{"bin/pgrep", "usr/bin/ipcs", "etc/passwd", "etc/group", "bin/sh", "bin/top", "bin/ping"} {
		if m[f] == nil {
			t.Errorf("base image lacks %s", f)
		}
	}
	for n, h := range m {
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", n, h.Uid, h.Gid)
		}
	}

	nnp, err := by["registry.k8s.io/e2e-test-images/nonewprivs:1.3"].Layers()
	if err != nil {
		t.Fatal(err)
	}
	h := members(t, nnp[len(nnp)-1])["usr/local/bin/nnp"]
	if h == nil || h.Mode&0o4000 == 0 || h.Uid != 0 {
		t.Errorf("nnp = %+v, want setuid root", h)
	}

	files := flatten(t, by[CritestWebServerImage])
	if _, ok := files["etc/nginx/run.sh"]; !ok {
		t.Error("nginx lacks its run script")
	}
	cf, err := by[CritestWebServerImage].ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(cf.Config.Cmd, "exec -a 'nginx: master process /bin/sh' /usr/sbin/nginx /etc/nginx/run.sh") {
		t.Errorf("nginx Cmd %q", cf.Config.Cmd)
	}
}
