package imagestore

import (
	"archive/tar"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// tarLayer builds a gzip layer from name -> content ("" content with a
// trailing "/" in the name is a directory).
func tarLayer(t testing.TB, files map[string]string, order ...string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, name := range order {
		body := files[name]
		h := &tar.Header{Name: name, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(body))}
		if strings.HasSuffix(name, "/") {
			h = &tar.Header{Name: name, Mode: 0o755, Typeflag: tar.TypeDir}
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(body)); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// twoLayerImage has etc/keep and etc/gone in the base; the top layer
// deletes etc/gone (whiteout) and adds etc/new.
func twoLayerImage(t testing.TB) v1.Image {
	t.Helper()
	base := tarLayer(t, map[string]string{"etc/keep": "keep\n", "etc/gone": "gone\n"}, "etc/", "etc/keep", "etc/gone")
	top := tarLayer(t, map[string]string{"etc/.wh.gone": "", "etc/new": "new\n"}, "etc/", "etc/.wh.gone", "etc/new")
	img, err := mutate.AppendLayers(empty.Image, base, top)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestSnapshotsKeepLayersFromGC(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/two:v1", twoLayerImage(t))
	s := openStore(t, Config{})
	ctx := t.Context()
	img, err := s.Pull(ctx, ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.Prepare(ctx, "c1", ref)
	if err != nil {
		t.Fatal(err)
	}
	want := "lowerdir=" + s.layers.Dir(img.Layers[1].ChainID) + ":" + s.layers.Dir(img.Layers[0].ChainID)
	if len(ms) != 1 || ms[0].Type != "overlay" || !strings.Contains(strings.Join(ms[0].Options, ","), want) {
		t.Fatalf("prepare mounts %+v, want topmost layer first (%s)", ms, want)
	}
	if _, err := s.Remove(ctx, ref, RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := layerCount(t, s); n != 2 {
		t.Fatalf("gc removed layers a snapshot uses: %d left", n)
	}
	if err := s.RemoveSnapshot(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RemoveSnapshot(ctx, "c1"); err != nil {
		t.Fatalf("remove missing snapshot: %v", err)
	}
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if n := layerCount(t, s); n != 0 {
		t.Fatalf("layers left after the snapshot went: %d", n)
	}
	if _, err := s.View(ctx, "v1", ref); err == nil {
		t.Fatal("view of a removed image succeeded")
	}
}
