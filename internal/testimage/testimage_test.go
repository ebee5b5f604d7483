package testimage

import (
	"archive/tar"
	"errors"
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func builders() map[string]func() (v1.Image, error) {
	return map[string]func() (v1.Image, error){
		"busybox":   Busybox,
		"whiteouts": Whiteouts,
		"nonroot":   NonRoot,
		"big":       func() (v1.Image, error) { return Big(3, 3) },
	}
}

func TestImagesAreValidAndDeterministic(t *testing.T) {
	for n, build := range builders() {
		t.Run(n, func(t *testing.T) {
			img1, err := build()
			if err != nil {
				t.Fatal(err)
			}
			if err := validate.Image(img1); err != nil {
				t.Fatalf("invalid image: %v", err)
			}
			img2, err := build()
			if err != nil {
				t.Fatal(err)
			}
			d1, _ := img1.Digest()
			d2, err := img2.Digest()
			if err != nil {
				t.Fatal(err)
			}
			if d1 != d2 {
				t.Errorf("two builds differ: %s vs %s", d1, d2)
			}
			mt, err := img1.MediaType()
			if err != nil || mt != types.OCIManifestSchema1 {
				t.Errorf("manifest media type = %q, %v; want %q", mt, err, types.OCIManifestSchema1)
			}
			m, err := img1.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.Config.MediaType != types.OCIConfigJSON {
				t.Errorf("config media type = %q", m.Config.MediaType)
			}
			for _, l := range m.Layers {
				if l.MediaType != types.OCILayer {
					t.Errorf("layer media type = %q", l.MediaType)
				}
			}
			cf, err := img1.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || len(cf.Config.Env) == 0 || cf.Config.Env[0] != "PATH="+PATH {
				t.Errorf("config os=%q env=%q", cf.OS, cf.Config.Env)
			}
		})
	}
}

// members reads every header of the uncompressed layer, keyed by name.
func members(t *testing.T, l v1.Layer) map[string]*tar.Header {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]*tar.Header{}
	var prev string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.IsZero() && h.ModTime.Unix() != 0 {
			t.Errorf("%s: mtime %v, want 0", h.Name, h.ModTime)
		}
		if h.Typeflag == tar.TypeLink {
			if _, ok := out[h.Linkname]; !ok {
				t.Errorf("hard link %s precedes its target %s", h.Name, h.Linkname)
			}
		} else if h.Name < prev {
			t.Errorf("%s after %s: members not sorted", h.Name, prev)
		} else {
			prev = h.Name
		}
		out[h.Name] = h
	}
}

func TestBusyboxContents(t *testing.T) {
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) != 1 {
		t.Fatalf("layers = %d, %v; want 1", len(ls), err)
	}
	m := members(t, ls[0])
	if h := m["bin/busybox"]; h == nil || h.Typeflag != tar.TypeReg || h.Mode&0o111 == 0 {
		t.Fatalf("bin/busybox missing or not an executable file: %+v", h)
	}
	for _, a := range []string{"sh", "sleep", "httpd", "nc", "echo", "cat", "ls", "id", "top", "ping"} {
		h := m["bin/"+a]
		if h == nil || h.Typeflag != tar.TypeLink || h.Linkname != "bin/busybox" {
			t.Errorf("bin/%s is not a hard link to bin/busybox: %+v", a, h)
		}
	}
	for n, h := range m {
		if h.Uid != 0 || h.Gid != 0 {
			t.Errorf("%s owned by %d:%d, want root", n, h.Uid, h.Gid)
		}
	}
	if h := m["tmp/"]; h == nil || h.Mode&0o1777 != 0o1777 {
		t.Errorf("tmp/ not 1777: %+v", h)
	}
	fs := flatten(t, img)
	for _, line := range []string{"root:x:0:0:", "nobody:x:65534:65534:", "www-data:x:33:33:"} {
		if !strings.Contains(fs["etc/passwd"], line) {
			t.Errorf("/etc/passwd lacks %q:\n%s", line, fs["etc/passwd"])
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cf.Config.Cmd, " "); got != "sh" {
		t.Errorf("cmd = %q, want sh", got)
	}
}

// flatten applies the image's layers with ggcr's own whiteout handling
// (an implementation independent of Berth's) and returns regular files and
// directories (as "") by name.
func flatten(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	out := map[string]string{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		n := strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/")
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = string(b)
	}
}

func TestWhiteoutsMatchExpectation(t *testing.T) {
	img, err := Whiteouts()
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil || len(ls) != 3 {
		t.Fatalf("layers = %d, %v; want 3", len(ls), err)
	}
	top := members(t, ls[2])
	for _, w := range []string{"data/.wh.remove-me.txt", "data/.wh.gone", "olddir/.wh..wh..opq"} {
		if top[w] == nil {
			t.Errorf("top layer lacks whiteout %s", w)
		}
	}
	fs := flatten(t, img)
	exp := ExpectedWhiteouts()
	for p, want := range exp.Files {
		got, ok := fs[strings.TrimPrefix(p, "/")]
		if !ok {
			t.Errorf("%s missing after flattening", p)
		} else if want != "" && got != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	for _, p := range exp.Absent {
		if _, ok := fs[strings.TrimPrefix(p, "/")]; ok {
			t.Errorf("%s present after flattening, want removed", p)
		}
	}
	for n := range fs {
		if strings.Contains(n, ".wh.") {
			t.Errorf("whiteout %s leaked into the flattened tree", n)
		}
	}
}

func TestNonRoot(t *testing.T) {
	img, err := NonRoot()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "1000:1000" {
		t.Errorf("user = %q, want 1000:1000", cf.Config.User)
	}
	fs := flatten(t, img)
	if !strings.Contains(fs["etc/passwd"], "berth:x:1000:1000:") || !strings.Contains(fs["etc/passwd"], "root:x:0:0:") {
		t.Errorf("/etc/passwd:\n%s", fs["etc/passwd"])
	}
	if !strings.Contains(fs["etc/group"], "berth:x:1000:") {
		t.Errorf("/etc/group:\n%s", fs["etc/group"])
	}
	ls, _ := img.Layers()
	h := members(t, ls[len(ls)-1])["home/berth/"]
	if h == nil || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("home/berth/ = %+v, want owned by 1000:1000", h)
	}
}

func TestBig(t *testing.T) {
	img, err := Big(4, 5)
	if err != nil {
		t.Fatal(err)
	}
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 6 {
		t.Fatalf("layers = %d, want busybox + 5", len(ls))
	}
	var data int64
	for _, l := range ls[1:] {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		data += n
	}
	// Random data: the compressed layers stay about as big as asked.
	if data < 4<<20 || data > 5<<20 {
		t.Errorf("data layers hold %d compressed bytes, want about 4 MiB", data)
	}
	d1, _ := ls[1].Digest()
	d2, _ := ls[2].Digest()
	if d1 == d2 {
		t.Error("two data layers are identical")
	}
	if _, err := Big(0, 1); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Big(0, 1) error = %v, want invalid argument", err)
	}
}

func TestPushToLocalRegistry(t *testing.T) {
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	img, err := Whiteouts()
	if err != nil {
		t.Fatal(err)
	}
	ref := u.Host + "/berth/whiteouts:latest"
	if err := Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled digest %s, pushed %s", d, want)
	}
	if err := Push(t.Context(), img, "Not A Reference"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("push to a bad reference: %v, want invalid argument", err)
	}
}
