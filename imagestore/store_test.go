package imagestore

import (
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore/content"
)

// testRegistry is an in-process registry on 127.0.0.1 that counts blob
// GETs and lets a test intercept requests.
type testRegistry struct {
	srv  *httptest.Server
	host string

	mu       sync.Mutex
	blobGets map[string]int
	// intercept, when set, may serve the request itself (returns true).
	intercept func(w http.ResponseWriter, r *http.Request) bool
}

func newRegistry(t testing.TB) *testRegistry {
	t.Helper()
	tr := &testRegistry{blobGets: map[string]int{}}
	h := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	tr.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
			tr.mu.Lock()
			tr.blobGets[r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]]++
			tr.mu.Unlock()
		}
		tr.mu.Lock()
		f := tr.intercept
		tr.mu.Unlock()
		if f != nil && f(w, r) {
			return
		}
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(tr.srv.Close)
	tr.host = strings.TrimPrefix(tr.srv.URL, "http://")
	return tr
}

func (tr *testRegistry) setIntercept(f func(w http.ResponseWriter, r *http.Request) bool) {
	tr.mu.Lock()
	tr.intercept = f
	tr.mu.Unlock()
}

func (tr *testRegistry) gets() (total int, max int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, n := range tr.blobGets {
		total += n
		max = maxInt(max, n)
	}
	return total, max
}

func (tr *testRegistry) resetGets() {
	tr.mu.Lock()
	tr.blobGets = map[string]int{}
	tr.mu.Unlock()
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// push writes img to repo:tag ("test/img:v1") and returns the full name.
func (tr *testRegistry) push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return tr.host + "/" + repoTag
}

func randomImage(t testing.TB, size int64, layers int) v1.Image {
	t.Helper()
	img, err := random.Image(size, int64(layers))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func configDigest(t testing.TB, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func manifestDigest(t testing.TB, img v1.Image) digest.Digest {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func openStore(t testing.TB, cfg Config) *Store {
	t.Helper()
	if cfg.Root == "" {
		cfg.Root = t.TempDir()
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func blobs(t testing.TB, s *Store) []digest.Digest {
	t.Helper()
	var out []digest.Digest
	if err := s.content.Walk(func(i content.Info) error { out = append(out, i.Digest); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func layerCount(t testing.TB, s *Store) int {
	t.Helper()
	l, err := s.layers.List()
	if err != nil {
		t.Fatal(err)
	}
	return len(l)
}

func listIDs(t testing.TB, s *Store) []digest.Digest {
	t.Helper()
	imgs, err := s.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []digest.Digest
	for _, i := range imgs {
		ids = append(ids, i.ID)
	}
	return ids
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 4096, 3)
	ref := reg.push(t, "test/img:v1", img)
	s := openStore(t, Config{})
	ctx := t.Context()

	var mu sync.Mutex
	var statuses []string
	got, err := s.Pull(ctx, ref, PullOptions{Progress: func(p Progress) {
		mu.Lock()
		statuses = append(statuses, p.Status)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	id := configDigest(t, img)
	if got.ID != id || got.ManifestDigest != manifestDigest(t, img) || len(got.Layers) != 3 {
		t.Fatalf("pulled %+v, want ID %s", got, id)
	}
	if !slices.Equal(got.RepoTags, []string{ref}) || !slices.Equal(got.RepoDigests, []string{reg.host + "/test/img@" + string(got.ManifestDigest)}) {
		t.Fatalf("names: %v %v", got.RepoTags, got.RepoDigests)
	}
	if !slices.Contains(statuses, "Pull complete") || !slices.Contains(statuses, "Pulling fs layer") {
		t.Fatalf("progress statuses: %v", statuses)
	}
	var unpacked int64
	for _, l := range got.Layers {
		if _, err := s.content.Info(l.Digest); err != nil {
			t.Fatalf("layer blob %s: %v", l.Digest, err)
		}
		if l.UnpackedSize <= 0 {
			t.Errorf("layer %s: unpacked size %d", l.Digest, l.UnpackedSize)
		}
		unpacked += l.UnpackedSize
		entries, err := os.ReadDir(s.layers.Dir(l.ChainID))
		if err != nil || len(entries) == 0 {
			t.Fatalf("unpacked layer %s: %v entries, %v", l.ChainID, len(entries), err)
		}
	}
	if unpacked != got.UnpackedSize {
		t.Errorf("layers' unpacked sizes add up to %d, the image's is %d", unpacked, got.UnpackedSize)
	}
	for _, name := range []string{id.String(), id.Encoded(), id.Encoded()[:5], ref, string(got.ManifestDigest), reg.host + "/test/img@" + string(got.ManifestDigest)} {
		g, err := s.Get(ctx, name)
		if err != nil || g.ID != id {
			t.Errorf("get %q: %v %v", name, g, err)
		}
	}
	if _, err := s.Get(ctx, reg.host+"/test/img:nope"); !errdefs.IsNotFound(err) {
		t.Fatalf("get unknown tag: %v", err)
	}

	// By digest into a fresh store: recorded as repo digest only.
	s2 := openStore(t, Config{})
	byDigest := reg.host + "/test/img@" + string(got.ManifestDigest)
	got2, err := s2.Pull(ctx, byDigest, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got2.ID != id || len(got2.RepoTags) != 0 || !slices.Equal(got2.RepoDigests, []string{byDigest}) {
		t.Fatalf("pulled by digest: %+v", got2)
	}
}

func TestRePullIsNoOp(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 2048, 2))
	s := openStore(t, Config{})
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if total, _ := reg.gets(); total != 3 {
		t.Fatalf("first pull: %d blob GETs, want 3 (config + 2 layers)", total)
	}
	reg.resetGets()
	var exists int
	if _, err := s.Pull(t.Context(), ref, PullOptions{Progress: func(p Progress) {
		if p.Status == "Already exists" {
			exists++
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if total, _ := reg.gets(); total != 0 || exists != 2 {
		t.Fatalf("re-pull: %d blob GETs, %d already exists", total, exists)
	}
}

func TestConcurrentPullsShareDownloads(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 1<<20, 4))
	s := openStore(t, Config{})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = s.Pull(t.Context(), ref, PullOptions{})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if total, max := reg.gets(); max != 1 || total != 5 {
		t.Fatalf("4 concurrent pulls: %d blob GETs, one blob fetched %d times", total, max)
	}
	if ids := listIDs(t, s); len(ids) != 1 {
		t.Fatalf("images: %v", ids)
	}
}

func TestReopenKeepsImages(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2048, 2)
	ref := reg.push(t, "test/img:v1", img)
	root := t.TempDir()
	s, err := Open(t.Context(), Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(t.Context(), ref, "mine:1"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openStore(t, Config{Root: root})
	got, err := s.Get(t.Context(), "mine:1")
	if err != nil || got.ID != configDigest(t, img) {
		t.Fatalf("after reopen: %v %v", got, err)
	}
	if !slices.Equal(got.RepoTags, []string{ref, "docker.io/library/mine:1"}) {
		t.Fatalf("tags after reopen: %v", got.RepoTags)
	}
	if len(s.Repairs()) != 0 {
		t.Fatalf("repairs on a clean reopen: %v", s.Repairs())
	}
	if err := s.Pin(t.Context(), "mine:1"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(t.Context(), ref); !got.Pinned {
		t.Fatal("pin did not stick")
	}
	if err := s.Unpin(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Get(t.Context(), ref); got.Pinned {
		t.Fatal("unpin did not stick")
	}
}

func TestOpenRepairs(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 2048, 2))
	ref2 := reg.push(t, "test/other:v1", randomImage(t, 2048, 1))
	root := t.TempDir()
	s, err := Open(t.Context(), Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.Pull(t.Context(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Pull(t.Context(), ref2, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// a loses an unpacked layer (repairable), b loses a blob (not).
	if err := os.RemoveAll(filepath.Dir(s.layers.Dir(a.Layers[1].ChainID))); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(s.content.Path(b.Layers[0].Digest)); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, Config{Root: root})
	if len(s.Repairs()) != 2 {
		t.Fatalf("repairs: %q", s.Repairs())
	}
	if _, err := s.Get(t.Context(), ref); err != nil {
		t.Fatalf("repaired image: %v", err)
	}
	if _, err := s.layers.Info(a.Layers[1].ChainID); err != nil {
		t.Fatalf("layer not unpacked again: %v", err)
	}
	if _, err := s.Get(t.Context(), ref2); !errdefs.IsNotFound(err) {
		t.Fatalf("image with a lost blob: %v", err)
	}
	if _, err := s.Pull(t.Context(), ref2, PullOptions{}); err != nil {
		t.Fatalf("pull again: %v", err)
	}
}

func TestSecondOpenFailsClearly(t *testing.T) {
	root := t.TempDir()
	openStore(t, Config{Root: root})
	// An ingest of the owner in progress must survive the failed open.
	ingest := filepath.Join(root, "ingest", "inflight")
	if err := os.WriteFile(ingest, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if _, err := os.Stat(ingest); err != nil {
			t.Errorf("second open removed the owner's ingest: %v", err)
		}
	}()
	done := make(chan error, 1)
	go func() {
		_, err := Open(context.Background(), Config{Root: root})
		done <- err
	}()
	if err := <-done; !errdefs.IsUnavailable(err) {
		t.Fatalf("second open of one root: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	s := openStore(t, Config{})
	for _, n := range []string{"", "Upper", "a@sha256:zz"} {
		if _, err := s.Pull(t.Context(), n, PullOptions{}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("pull %q: %v", n, err)
		}
	}
	if _, err := s.Get(t.Context(), "busybox"); !errdefs.IsNotFound(err) {
		t.Errorf("get busybox in empty store: %v", err)
	}
	if _, err := s.Remove(t.Context(), "busybox", RemoveOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("remove busybox in empty store: %v", err)
	}
}

func pushIndex(t testing.TB, tr *testRegistry, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	ref, err := name.ParseReference(tr.host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, idx); err != nil {
		t.Fatal(err)
	}
	return tr.host + "/" + repoTag
}

// A pull killed after some layers were committed but before the record
// was written leaves blobs and layers no image references: the next Open
// collects them and keeps what images use.
func TestOpenCollectsOrphansOfAKilledPull(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 2048, 1))
	root := t.TempDir()
	s, err := Open(t.Context(), Config{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	orphan := randomImage(t, 2048, 1)
	ls, _ := orphan.Layers()
	d, _ := ls[0].Digest()
	diffID, _ := ls[0].DiffID()
	size, _ := ls[0].Size()
	rc, _ := ls[0].Compressed()
	if err := s.content.Put(digest.Digest(d.String()), size, rc); err != nil {
		t.Fatal(err)
	}
	f, _ := s.content.Reader(digest.Digest(d.String()))
	if _, err := s.layers.Unpack(t.Context(), digest.Digest(diffID.String()), digest.Digest(diffID.String()), f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if n := len(blobs(t, s)); n != 4 || layerCount(t, s) != 2 {
		t.Fatalf("setup: %d blobs, %d layers", n, layerCount(t, s))
	}
	s.Close()
	s = openStore(t, Config{Root: root})
	if n := len(blobs(t, s)); n != 3 || layerCount(t, s) != 1 {
		t.Fatalf("after reopen: %d blobs, %d layers; want 3 and 1", n, layerCount(t, s))
	}
	if _, err := s.Get(t.Context(), ref); err != nil {
		t.Fatal(err)
	}
}
