package imagestore

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore/meta"
)

func mountSnapshot(t *testing.T, ms []Mount) string {
	t.Helper()
	target := t.TempDir()
	m := ms[0]
	var flags uintptr
	var data []string
	for _, o := range m.Options {
		switch o {
		case "rbind":
			flags |= unix.MS_BIND | unix.MS_REC
		case "ro":
			flags |= unix.MS_RDONLY
		case "rw":
		default:
			data = append(data, o)
		}
	}
	typ := m.Type
	if typ == "bind" {
		typ = ""
	}
	if err := unix.Mount(m.Source, target, typ, flags, strings.Join(data, ",")); err != nil {
		t.Fatalf("mount %+v: %v", m, err)
	}
	return target
}

func blobTar(t *testing.T, s *Store, d digest.Digest) map[string]*tar.Header {
	t.Helper()
	f, err := s.content.Reader(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]*tar.Header{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = h
	}
}

// layerTar makes the blob of a layer a build committed (as a push or a
// save does) and returns its entries.
func layerTar(t *testing.T, s *Store, l Layer) map[string]*tar.Header {
	t.Helper()
	if err := s.layerBlob(t.Context(), metaLayer(l)); err != nil {
		t.Fatal(err)
	}
	return blobTar(t, s, l.Digest)
}

func metaLayer(l Layer) meta.Layer {
	return meta.Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, DiffID: l.DiffID, ChainID: l.ChainID}
}

// TestBuildStepToImage runs what a build does with the store: a diffable
// snapshot over an image's layers, changes made through the overlay (a new
// file, a deleted lower file, a directory replaced whole, a hard link), the
// upper dir committed as a layer whose tar carries the OCI whiteouts, a
// second snapshot over the result that sees the changes, an image recorded
// with two tags at once, the cache entry found again, and GC keeping what a
// lease, the cache or the image holds.
func TestBuildStepToImage(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlayfs needs root")
	}
	reg := newRegistry(t)
	ref := reg.push(t, "test/two:v1", twoLayerImage(t))
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	lease := s.NewLease()
	defer lease.Release()
	base, err := lease.Image(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := s.PrepareBuild(ctx, "build-1", base.Layers)
	if err != nil {
		t.Fatal(err)
	}
	root := mountSnapshot(t, ms)
	for _, step := range []func() error{
		func() error { return os.WriteFile(filepath.Join(root, "etc/added"), []byte("added\n"), 0o640) },
		func() error { return os.Remove(filepath.Join(root, "etc/keep")) },
		func() error { return os.MkdirAll(filepath.Join(root, "srv/data"), 0o755) },
		func() error { return os.Link(filepath.Join(root, "etc/added"), filepath.Join(root, "srv/data/link")) },
		func() error { return os.RemoveAll(filepath.Join(root, "etc")) },
		func() error { return os.Mkdir(filepath.Join(root, "etc"), 0o700) },
		func() error { return os.WriteFile(filepath.Join(root, "etc/only"), []byte("only\n"), 0o644) },
	} {
		if err := step(); err != nil {
			unix.Unmount(root, 0)
			t.Fatal(err)
		}
	}
	if err := unix.Unmount(root, 0); err != nil {
		t.Fatal(err)
	}
	top := base.Layers[len(base.Layers)-1].ChainID
	l, err := s.CommitSnapshot(ctx, lease, "build-1", top)
	if err != nil {
		t.Fatal(err)
	}
	if l == nil || l.Digest != l.DiffID || l.MediaType != MediaTypeLayerTar {
		t.Fatalf("layer %+v", l)
	}
	if ids, _ := s.Snapshots(ctx); len(ids) != 0 {
		t.Fatalf("snapshots left after commit: %v", ids)
	}
	if _, err := s.content.Info(l.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("the layer's blob was written at the commit: %v", err)
	}
	hs := layerTar(t, s, *l)
	var names []string
	for n := range hs {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"etc/", "etc/.wh..wh..opq", "etc/only", "srv/", "srv/data/", "srv/data/link"}
	if !slices.Equal(names, want) {
		t.Fatalf("layer tar has %v, want %v", names, want)
	}
	if h := hs["etc/"]; h.Mode&0o777 != 0o700 {
		t.Fatalf("etc/ mode %o", h.Mode)
	}
	// The whiteout of etc/keep went with the opaque directory; a plain
	// deletion gives a .wh. entry.
	ms, err = s.PrepareBuild(ctx, "build-2", append(slices.Clone(base.Layers), *l))
	if err != nil {
		t.Fatal(err)
	}
	root = mountSnapshot(t, ms)
	_, gerr := os.Stat(filepath.Join(root, "etc/new"))
	b, rerr := os.ReadFile(filepath.Join(root, "srv/data/link"))
	werr := os.Remove(filepath.Join(root, "srv/data/link"))
	unix.Unmount(root, 0)
	if !errors.Is(gerr, os.ErrNotExist) || rerr != nil || string(b) != "added\n" || werr != nil {
		t.Fatalf("second snapshot: etc/new %v, link %q %v, remove %v", gerr, b, rerr, werr)
	}
	l2, err := s.CommitSnapshot(ctx, lease, "build-2", l.ChainID)
	if err != nil {
		t.Fatal(err)
	}
	if h := layerTar(t, s, *l2); h["srv/data/.wh.link"] == nil {
		t.Fatalf("no whiteout for the removed link: %v", h)
	}

	// An unchanged snapshot gives no layer.
	if _, err := s.PrepareBuild(ctx, "build-3", []Layer{*l}); err != nil {
		t.Fatal(err)
	}
	if l3, err := s.CommitSnapshot(ctx, lease, "build-3", l.ChainID); err != nil || l3 != nil {
		t.Fatalf("empty commit: %+v %v", l3, err)
	}

	layers := append(slices.Clone(base.Layers), *l)
	var cfg ocispec.Image
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.RootFS.Type = "layers"
	for _, ly := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, ly.DiffID)
	}
	raw, _ := json.Marshal(cfg)
	img, err := s.CommitImage(ctx, ImageCommit{Config: raw, Layers: layers, Tags: []string{"built/one", "built/two:v2"}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.RepoTags, []string{"docker.io/built/one:latest", "docker.io/built/two:v2"}) || img.ID != digest.FromBytes(raw) {
		t.Fatalf("image %s tags %v", img.ID, img.RepoTags)
	}
	// A config that disagrees with the layers is refused.
	if _, err := s.CommitImage(ctx, ImageCommit{Config: raw, Layers: layers[:1]}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("mismatched config: %v", err)
	}
	var save bytes.Buffer
	if err := s.Save(ctx, &save, []string{"built/one"}, DockerArchive); err != nil {
		t.Fatal(err)
	}

	key := digest.FromString("step")
	if err := s.PutBuildCache(ctx, []CacheEntry{{Key: key, Layers: []Layer{*l, *l2}, Config: raw, Created: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	lease.Release()
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	l2lease := s.NewLease()
	defer l2lease.Release()
	e, err := l2lease.Cache(ctx, key)
	if err != nil || len(e.Layers) != 2 || e.Layers[1].ChainID != l2.ChainID {
		t.Fatalf("cache entry after GC: %+v %v", e, err)
	}
	l2lease.Release()
	// The image keeps l; only the cache kept l2: a prune frees it.
	pruned, err := s.PruneBuildCache(ctx, BuildCachePrune{})
	if err != nil || len(pruned.Deleted) != 1 || pruned.Reclaimed <= 0 {
		t.Fatalf("prune: %+v %v", pruned, err)
	}
	if _, err := s.layers.Info(l2.ChainID); !errdefs.IsNotFound(err) {
		t.Fatalf("layer only the cache held survived the prune: %v", err)
	}
	if _, err := s.layers.Info(l.ChainID); err != nil {
		t.Fatalf("image layer removed by the prune: %v", err)
	}
	if _, err := s.NewLease().Cache(ctx, key); !errdefs.IsNotFound(err) {
		t.Fatalf("pruned entry still found: %v", err)
	}
}

// commitFile commits a build step that writes name (content body) on top
// of parent (nil for none) and returns the new layer.
func commitFile(t *testing.T, s *Store, lease *Lease, id string, parent *Layer, name, body string) Layer {
	t.Helper()
	var lowers []Layer
	var chain digest.Digest
	if parent != nil {
		lowers, chain = []Layer{*parent}, parent.ChainID
	}
	ms, err := s.PrepareBuild(t.Context(), id, lowers)
	if err != nil {
		t.Fatal(err)
	}
	root := mountSnapshot(t, ms)
	err = os.WriteFile(filepath.Join(root, name), []byte(body), 0o644)
	unix.Unmount(root, 0)
	if err != nil {
		t.Fatal(err)
	}
	l, err := s.CommitSnapshot(t.Context(), lease, id, chain)
	if err != nil || l == nil {
		t.Fatalf("commit: %+v %v", l, err)
	}
	return *l
}

func commitLayersImage(t *testing.T, s *Store, tag string, layers ...Layer) *Image {
	t.Helper()
	var cfg ocispec.Image
	cfg.OS, cfg.Architecture, cfg.RootFS.Type = "linux", "amd64", "layers"
	for _, l := range layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
	}
	raw, _ := json.Marshal(cfg)
	img, err := s.CommitImage(t.Context(), ImageCommit{Config: raw, Layers: layers, Tags: []string{tag}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// TestBuiltLayerBlobOnDemand: a build's layers are recorded without a
// blob; the image survives a reopen of the store as it is; a push makes
// the blobs from the layer directories, and another store pulls the very
// image back; a layer directory that changed since its commit fails a
// save as lost data, storing no blob.
func TestBuiltLayerBlobOnDemand(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting overlayfs needs root")
	}
	root := t.TempDir()
	s := openStore(t, Config{Root: root})
	ctx := t.Context()
	lease := s.NewLease()
	l1 := commitFile(t, s, lease, "b1", nil, "hello", "hello\n")
	l2 := commitFile(t, s, lease, "b2", &l1, "world", "world\n")
	img := commitLayersImage(t, s, "built/lazy:1", l1, l2)
	lease.Release()
	for _, l := range []Layer{l1, l2} {
		if _, err := s.content.Info(l.Digest); !errdefs.IsNotFound(err) {
			t.Fatalf("blob of %s: %v, want none yet", l.Digest, err)
		}
	}
	if err := s.GC(ctx); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, Config{Root: root})
	if r := s.Repairs(); len(r) != 0 {
		t.Fatalf("reopen repaired %v", r)
	}
	if got, err := s.Get(ctx, "built/lazy:1"); err != nil || got.ID != img.ID {
		t.Fatalf("after a reopen: %+v %v", got, err)
	}

	reg := newRegistry(t)
	target := reg.host + "/pushed/lazy:1"
	if err := s.Tag(ctx, "built/lazy:1", target); err != nil {
		t.Fatal(err)
	}
	if err := s.Push(ctx, target, PushOptions{}); err != nil {
		t.Fatal(err)
	}
	if h := blobTar(t, s, l2.Digest); h["world"] == nil || len(h) != 1 {
		t.Fatalf("pushed layer 2 holds %v", h)
	}
	fresh := openStore(t, Config{})
	got, err := fresh.Pull(ctx, target, PullOptions{})
	if err != nil || got.ID != img.ID || got.Layers[1].DiffID != l2.DiffID {
		t.Fatalf("pulled back %+v %v", got, err)
	}

	lease = s.NewLease()
	defer lease.Release()
	l3 := commitFile(t, s, lease, "b3", &l2, "tampered", "before\n")
	commitLayersImage(t, s, "built/tampered:1", l1, l2, l3)
	if err := os.WriteFile(filepath.Join(s.layers.Dir(l3.ChainID), "tampered"), []byte("after!\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = s.Save(ctx, io.Discard, []string{"built/tampered:1"}, DockerArchive)
	if !errdefs.IsDataLoss(err) {
		t.Fatalf("save of a changed layer: %v, want data loss", err)
	}
	t.Log(err)
	if _, err := s.content.Info(l3.Digest); !errdefs.IsNotFound(err) {
		t.Fatalf("a wrong blob was stored: %v", err)
	}
}
