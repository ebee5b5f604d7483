package imagestore

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/internal/testutil"
)

func layerDigests(t *testing.T, img v1.Image) []digest.Digest {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	var out []digest.Digest
	for _, l := range ls {
		h, err := l.Digest()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, digest.Digest(h.String()))
	}
	return out
}

func layerSize(t *testing.T, img v1.Image, d digest.Digest) int64 {
	t.Helper()
	l, err := img.LayerByDigest(v1.Hash{Algorithm: d.Algorithm().String(), Hex: d.Encoded()})
	if err != nil {
		t.Fatal(err)
	}
	n, err := l.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// assertNothingStored checks that a failed pull left no image, no layer
// and no blob of the failing layer behind.
func assertNothingStored(t *testing.T, s *Store, bad digest.Digest) {
	t.Helper()
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("failed pull listed images %v", ids)
	}
	if _, err := s.content.Info(bad); !errdefs.IsNotFound(err) {
		t.Fatalf("blob of the failed layer stored: %v", err)
	}
}

func TestStallTimeout(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 256<<10, 2)
	ref := reg.push(t, "test/img:v1", img)
	bad := layerDigests(t, img)[1]
	size := layerSize(t, img, bad)
	release := make(chan struct{})
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 1000))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	})
	defer close(release)
	s := openStore(t, Config{StallTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := s.Pull(t.Context(), ref, PullOptions{})
	if err == nil {
		t.Fatal("stalled pull succeeded")
	}
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "sent no data for 300ms") || !strings.Contains(err.Error(), bad.String()) || !strings.Contains(err.Error(), reg.host) {
		t.Fatalf("stall error should be Unavailable and name layer %s and registry %s: %v", bad, reg.host, err)
	}
	t.Logf("stall error: %v", err)
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("stalled pull took %s", d)
	}
	assertNothingStored(t, s, bad)
	reg.setIntercept(nil)
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatalf("pull after stall: %v", err)
	}
}

func TestRegistryDiesMidPull(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 512<<10, 3)
	ref := reg.push(t, "test/img:v1", img)
	bad := layerDigests(t, img)[2]
	size := layerSize(t, img, bad)
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(make([]byte, 4096))
		w.(http.Flusher).Flush()
		go reg.srv.CloseClientConnections()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	})
	s := openStore(t, Config{})
	_, err := s.Pull(t.Context(), ref, PullOptions{})
	if err == nil {
		t.Fatal("pull from a dying registry succeeded")
	}
	// The registry dropping its connections breaks every layer then in
	// flight (three at a time): the error names whichever failed first.
	named := false
	for _, d := range layerDigests(t, img) {
		named = named || strings.Contains(err.Error(), d.String())
	}
	if !errdefs.IsUnavailable(err) || !named || !strings.Contains(err.Error(), reg.host) {
		t.Fatalf("error should be Unavailable and name a layer and registry %s: %v", reg.host, err)
	}
	assertNothingStored(t, s, bad)
	reg.srv.Close()
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); !errdefs.IsUnavailable(err) {
		t.Fatalf("pull from a closed registry: %v", err)
	}
}

func TestCorruptBlobRefused(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 64<<10, 1)
	ref := reg.push(t, "test/img:v1", img)
	bad := layerDigests(t, img)[0]
	l, err := img.LayerByDigest(v1.Hash{Algorithm: "sha256", Hex: bad.Encoded()})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Compressed()
	if err != nil {
		t.Fatal(err)
	}
	good := make([]byte, 0)
	buf := make([]byte, 32<<10)
	for {
		n, err := rc.Read(buf)
		good = append(good, buf[:n]...)
		if err != nil {
			break
		}
	}
	corrupt := append([]byte(nil), good...)
	corrupt[len(corrupt)-3] ^= 0xff // in the gzip trailer: the tar stays valid
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		w.Write(corrupt)
		return true
	})
	s := openStore(t, Config{})
	_, err = s.Pull(t.Context(), ref, PullOptions{})
	if err == nil {
		t.Fatal("pull of a corrupt blob succeeded")
	}
	if !strings.Contains(err.Error(), bad.String()) {
		t.Fatalf("error does not name layer %s: %v", bad, err)
	}
	assertNothingStored(t, s, bad)
	if n := layerCount(t, s); n != 0 {
		t.Fatalf("%d layers committed from a corrupt blob", n)
	}
}

// A registry serving the same tar compressed differently: the diff ID
// matches, only the blob digest tells. The layer must not be committed.
func TestRecompressedBlobRefused(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 64<<10, 1)
	ref := reg.push(t, "test/img:v1", img)
	bad := layerDigests(t, img)[0]
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := ls[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	var other bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&other, gzip.NoCompression)
	if _, err := io.Copy(zw, rc); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, bad.String()) {
			return false
		}
		w.Write(other.Bytes())
		return true
	})
	s := openStore(t, Config{})
	_, err = s.Pull(t.Context(), ref, PullOptions{})
	if !errdefs.IsDataLoss(err) {
		t.Fatalf("recompressed blob: %v", err)
	}
	assertNothingStored(t, s, bad)
	if n := layerCount(t, s); n != 0 {
		t.Fatalf("%d layers committed from a blob with the wrong digest", n)
	}
}

func TestBasicAuth(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 2048, 1))
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == want {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	s := openStore(t, Config{DockerConfig: filepath.Join(t.TempDir(), "absent.json")})
	_, err := s.Pull(t.Context(), ref, PullOptions{})
	if !errdefs.IsUnauthorized(err) {
		t.Fatalf("anonymous pull: %v", err)
	}
	_, err = s.Pull(t.Context(), ref, PullOptions{Auth: &Auth{Username: "alice", Password: "wrong"}})
	if !errdefs.IsUnauthorized(err) || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong password: %v", err)
	}
	t.Logf("wrong password: %v", err)
	if _, err := s.Pull(t.Context(), ref, PullOptions{Auth: &Auth{Username: "alice", Password: "s3cret"}}); err != nil {
		t.Fatalf("pull with credentials: %v", err)
	}

	// The docker config file gives the credentials when the pull has none.
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	cfg := `{"auths":{"` + reg.host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("alice:s3cret")) + `"}}}`
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	s2 := openStore(t, Config{DockerConfig: cfgPath})
	if _, err := s2.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatalf("pull with docker config: %v", err)
	}
}

func TestPullUnknownTagIsNotFound(t *testing.T) {
	reg := newRegistry(t)
	reg.push(t, "test/img:v1", randomImage(t, 1024, 1))
	s := openStore(t, Config{})
	_, err := s.Pull(t.Context(), reg.host+"/test/img:v2", PullOptions{})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of a missing tag: %v", err)
	}
	_, err = s.Pull(t.Context(), reg.host+"/test/none:v1", PullOptions{})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of a missing repository: %v", err)
	}
}

func TestMirrorFromHostsDir(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2048, 2)
	reg.push(t, "test/img:v1", img)
	dir := t.TempDir()
	hostDir := filepath.Join(dir, "registry.example.test")
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := `server = "https://registry.example.test"

[host."http://` + reg.host + `"]
  capabilities = ["pull", "resolve"]
`
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Config{RegistryConfigDir: dir})
	got, err := s.Pull(t.Context(), "registry.example.test/test/img:v1", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, img) || got.RepoTags[0] != "registry.example.test/test/img:v1" {
		t.Fatalf("pulled through mirror: %+v", got)
	}
}

func TestManifestListPlatforms(t *testing.T) {
	reg := newRegistry(t)
	amd, arm := randomImage(t, 2048, 2), randomImage(t, 2048, 1)
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
	)
	ref := pushIndex(t, reg, "test/multi:v1", idx)
	s := openStore(t, Config{})
	got, err := s.Pull(t.Context(), ref, PullOptions{Platform: &ocispec.Platform{OS: "linux", Architecture: "amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, amd) || got.ManifestDigest != manifestDigest(t, amd) {
		t.Fatalf("amd64 pull got %s", got.ID)
	}
	h, _ := idx.Digest()
	if got.RepoDigests[0] != reg.host+"/test/multi@"+h.String() {
		t.Fatalf("repo digest should be the index digest: %v", got.RepoDigests)
	}
	got, err = s.Pull(t.Context(), ref, PullOptions{Platform: &ocispec.Platform{OS: "linux", Architecture: "arm64"}})
	if err != nil || got.ID != configDigest(t, arm) {
		t.Fatalf("arm64 pull: %v %v", got, err)
	}
	if _, err := s.Pull(t.Context(), ref, PullOptions{Platform: &ocispec.Platform{OS: "linux", Architecture: "s390x"}}); err == nil {
		t.Fatal("pull of a missing platform succeeded")
	}
}

// A failing mirror is tried first, then the pull falls back to the
// registry itself.
func TestFailingMirrorFallsBackToServer(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 2048, 1)
	ref := reg.push(t, "test/img:v1", img)
	dead := newRegistry(t)
	var asked atomic.Int32
	dead.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		asked.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	})
	dir := t.TempDir()
	hostDir := filepath.Join(dir, reg.host)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		t.Fatal(err)
	}
	toml := `server = "http://` + reg.host + `"

[host."http://` + dead.host + `"]
  capabilities = ["pull", "resolve"]
`
	if err := os.WriteFile(filepath.Join(hostDir, "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, Config{RegistryConfigDir: dir})
	got, err := s.Pull(t.Context(), ref, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, img) {
		t.Fatalf("pulled %s", got.ID)
	}
	if asked.Load() == 0 {
		t.Fatal("the mirror was not tried first")
	}
}

// TestSparseLayerRefused: a registry serves an image whose layer holds a
// sparse file (2.5 KiB of tar that read as 1 GiB of zeros; the diff ID is
// right, so only the unpacker can tell). The pull fails as a bad layer at
// that entry, before writing it: no image, no blob of the layer, and the
// store's disk use stays small.
func TestSparseLayerRefused(t *testing.T) {
	reg := newRegistry(t)
	hostile := testutil.SparseTar("var/log/lastlog", 1<<30)
	bad, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(hostile)), nil })
	if err != nil {
		t.Fatal(err)
	}
	good, err := random.Layer(32<<10, types.DockerLayer)
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, good, bad)
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.push(t, "test/sparse:v1", img)
	badDigest := layerDigests(t, img)[1]
	s := openStore(t, Config{})
	_, err = s.Pull(t.Context(), ref, PullOptions{})
	if err == nil {
		t.Fatal("pull of a layer with a sparse file succeeded")
	}
	t.Log(err)
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "var/log/lastlog") || !strings.Contains(err.Error(), "sparse") {
		t.Fatalf("error is not a bad layer naming the sparse entry: %v", err)
	}
	assertNothingStored(t, s, badDigest)
	var used int64
	filepath.Walk(s.cfg.Root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			used += fi.Sys().(*syscall.Stat_t).Blocks * 512
		}
		return nil
	})
	if used > 16<<20 {
		t.Fatalf("the store uses %d bytes after the refused pull", used)
	}
}
