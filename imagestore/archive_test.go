package imagestore

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	digest "github.com/opencontainers/go-digest"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 32<<10, 3)
	ref := reg.push(t, "test/img:v1", img)
	src := openStore(t, Config{})
	ctx := t.Context()
	if _, err := src.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := src.Tag(ctx, ref, "second:2"); err != nil {
		t.Fatal(err)
	}
	for _, format := range []ArchiveFormat{DockerArchive, OCIArchive} {
		var buf bytes.Buffer
		if err := src.Save(ctx, &buf, []string{configDigest(t, img).String()}, format); err != nil {
			t.Fatal(err)
		}
		files := tarNames(t, buf.Bytes())
		_, hasDocker := files["manifest.json"]
		if _, ok := files["index.json"]; !ok || hasDocker != (format == DockerArchive) {
			t.Fatalf("format %d wrote %v", format, files)
		}
		dst := openStore(t, Config{})
		loaded, err := dst.Load(ctx, &buf)
		if err != nil {
			t.Fatalf("format %d: %v", format, err)
		}
		if len(loaded) != 1 || loaded[0].ID != configDigest(t, img) || len(loaded[0].Layers) != 3 {
			t.Fatalf("format %d loaded %+v", format, loaded)
		}
		want := []string{ref, "docker.io/library/second:2"}
		slices.Sort(want)
		if !slices.Equal(loaded[0].RepoTags, want) {
			t.Fatalf("format %d: tags %v, want %v", format, loaded[0].RepoTags, want)
		}
		for _, l := range loaded[0].Layers {
			if _, err := dst.layers.Info(l.ChainID); err != nil {
				t.Fatalf("format %d: layer not unpacked: %v", format, err)
			}
		}
		// A loaded image can be saved again byte for byte the same.
		var again bytes.Buffer
		if err := dst.Save(ctx, &again, []string{ref}, format); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Save(ctx, io.Discard, []string{"nope"}, DockerArchive); !errdefs.IsNotFound(err) {
		t.Fatalf("save unknown: %v", err)
	}
}

func tarNames(t *testing.T, b []byte) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h.Size
	}
}

// Archives written by other tools: ggcr's docker-save writer and a tarred
// ggcr OCI layout.
func TestLoadForeignArchives(t *testing.T) {
	img := randomImage(t, 16<<10, 2)
	tag, err := name.NewTag("example.com/foreign/img:3")
	if err != nil {
		t.Fatal(err)
	}
	var docker bytes.Buffer
	if err := tarball.Write(tag, img, &docker); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Config{})
	loaded, err := s.Load(t.Context(), &docker)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].ID != configDigest(t, img) || !slices.Equal(loaded[0].RepoTags, []string{"example.com/foreign/img:3"}) {
		t.Fatalf("docker-save archive loaded %+v", loaded)
	}

	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	img2 := randomImage(t, 16<<10, 1)
	if err := p.AppendImage(img2, layout.WithAnnotations(map[string]string{annotationImageName: "example.com/oci/img:1"})); err != nil {
		t.Fatal(err)
	}
	loaded, err = s.Load(t.Context(), bytes.NewReader(tarDir(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].ID != configDigest(t, img2) || loaded[0].ManifestDigest != manifestDigest(t, img2) || !slices.Equal(loaded[0].RepoTags, []string{"example.com/oci/img:1"}) {
		t.Fatalf("oci layout loaded %+v", loaded)
	}
}

func TestLoadRefusesEscapes(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "../evil", Typeflag: tar.TypeReg, Size: 1, Mode: 0o644})
	tw.Write([]byte("x"))
	tw.Close()
	s := openStore(t, Config{})
	if _, err := s.Load(t.Context(), &buf); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("load with ../: %v", err)
	}
	if _, err := os.Stat(filepath.Join(s.cfg.Root, "evil")); !os.IsNotExist(err) {
		t.Fatalf("escape written: %v", err)
	}
	var junk bytes.Buffer
	tw = tar.NewWriter(&junk)
	b, _ := json.Marshal(map[string]string{"a": "b"})
	tw.WriteHeader(&tar.Header{Name: "other.json", Typeflag: tar.TypeReg, Size: int64(len(b)), Mode: 0o644})
	tw.Write(b)
	tw.Close()
	if _, err := s.Load(t.Context(), &junk); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("load of a tar that is no image archive: %v", err)
	}
}

func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if err := tw.WriteHeader(&tar.Header{Name: rel, Typeflag: tar.TypeReg, Size: int64(len(b)), Mode: 0o644}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

// docker save before 25: <id>/layer.tar plain tars, duplicates as symlinks.
func TestLoadLegacyDockerSave(t *testing.T) {
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3})
	tw.Write([]byte("hi\n"))
	tw.Close()
	diffID := digestOf(layerTar.Bytes())
	cfg := []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":["` + diffID + `","` + diffID + `"]}}`)
	cfgName := digestOf(cfg)[len("sha256:"):] + ".json"
	manifest := []byte(`[{"Config":"` + cfgName + `","RepoTags":["legacy:1"],"Layers":["a/layer.tar","b/layer.tar"]}]`)

	var archive bytes.Buffer
	aw := tar.NewWriter(&archive)
	put := func(name string, b []byte) {
		aw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b))})
		aw.Write(b)
	}
	aw.WriteHeader(&tar.Header{Name: "a/", Typeflag: tar.TypeDir, Mode: 0o755})
	put("a/layer.tar", layerTar.Bytes())
	aw.WriteHeader(&tar.Header{Name: "b/", Typeflag: tar.TypeDir, Mode: 0o755})
	aw.WriteHeader(&tar.Header{Name: "b/layer.tar", Typeflag: tar.TypeSymlink, Linkname: "../a/layer.tar"})
	put(cfgName, cfg)
	put("manifest.json", manifest)
	aw.Close()

	s := openStore(t, Config{})
	loaded, err := s.Load(t.Context(), &archive)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || loaded[0].ID.String() != digestOf(cfg) || len(loaded[0].Layers) != 2 ||
		loaded[0].Layers[0].MediaType != mediaTypeDockerLayer || !slices.Equal(loaded[0].RepoTags, []string{"docker.io/library/legacy:1"}) {
		t.Fatalf("loaded %+v", loaded)
	}
	b, err := os.ReadFile(filepath.Join(s.layers.Dir(loaded[0].Layers[0].ChainID), "hello"))
	if err != nil || string(b) != "hi\n" {
		t.Fatalf("unpacked file: %q %v", b, err)
	}
}

// What Save writes as a docker archive is read by another implementation
// of the format (ggcr's tarball package).
func TestSavedDockerArchiveReadsElsewhere(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 8<<10, 2)
	ref := reg.push(t, "test/img:v1", img)
	s := openStore(t, Config{})
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Save(t.Context(), &buf, []string{ref}, DockerArchive); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	other, err := tarball.Image(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }, &tag)
	if err != nil {
		t.Fatal(err)
	}
	if configDigest(t, other) != configDigest(t, img) {
		t.Fatal("config differs")
	}
	ls, err := other.Layers()
	if err != nil || len(ls) != 2 {
		t.Fatalf("layers: %d %v", len(ls), err)
	}
	for _, l := range ls {
		rc, err := l.Compressed()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(io.Discard, rc); err != nil {
			t.Fatal(err)
		}
		rc.Close()
	}
}

func digestOf(b []byte) string { return digest.FromBytes(b).String() }
