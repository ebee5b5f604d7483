package layer

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/testutil"
)

// testLayer is a gzip layer with its diff ID.
type testLayer struct {
	gz     []byte
	diffID digest.Digest
}

// makeLayer builds a layer from name, body pairs; a name ending in "/" is a
// directory, a body "hardlink:x" a hard link to x.
func makeLayer(t testing.TB, files ...string) testLayer {
	t.Helper()
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	for i := 0; i < len(files); i += 2 {
		name, body := files[i], files[i+1]
		if strings.HasSuffix(name, "/") {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755})
			continue
		}
		if target, ok := strings.CutPrefix(body, "hardlink:"); ok {
			tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeLink, Linkname: target})
			continue
		}
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(body))})
		tw.Write([]byte(body))
	}
	tw.Close()
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain.Bytes())
	zw.Close()
	return testLayer{gz: gz.Bytes(), diffID: digest.FromBytes(plain.Bytes())}
}

// chain is a made-up chain ID for a test.
func chain(s string) digest.Digest { return digest.FromString("chain " + s) }

func open(t *testing.T) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

func TestUnpack(t *testing.T) {
	s, _ := open(t)
	l := makeLayer(t, "etc/", "", "etc/os-release", "ID=berth\n", "bin/sh", strings.Repeat("x", 10000), "bin/ash", "hardlink:bin/sh")
	info, err := s.Unpack(t.Context(), chain("a"), l.diffID, bytes.NewReader(l.gz))
	if err != nil {
		t.Fatal(err)
	}
	if info.ChainID != chain("a") || info.DiffID != l.diffID || info.Size <= 10000 || info.Inodes != 5 {
		t.Errorf("info = %+v", info)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(chain("a")), "etc/os-release"))
	if err != nil || string(b) != "ID=berth\n" {
		t.Errorf("etc/os-release = %q, %v", b, err)
	}
	got, err := s.Info(chain("a"))
	if err != nil || got != info {
		t.Errorf("Info = %+v, %v; want %+v", got, err, info)
	}
	testutil.CheckDu(t, s.Dir(chain("a")), info.Size, info.Inodes)

	// Present: returned without touching the reader.
	again, err := s.Unpack(t.Context(), chain("a"), l.diffID, iotestErrReader{})
	if err != nil || again != info {
		t.Errorf("second Unpack = %+v, %v", again, err)
	}
	list, err := s.List()
	if err != nil || len(list) != 1 || list[0] != info {
		t.Errorf("List = %+v, %v", list, err)
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("reader must not be read") }

func assertEmpty(t *testing.T, root string) {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "layers"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left behind in layers/: %s", e.Name())
	}
}

func TestUnpackWrongDiffID(t *testing.T) {
	s, root := open(t)
	l := makeLayer(t, "a", "b")
	_, err := s.Unpack(t.Context(), chain("a"), digest.FromString("other"), bytes.NewReader(l.gz))
	if !errors.Is(err, errdefs.ErrDataLoss) {
		t.Fatalf("wrong diff ID: %v", err)
	}
	if _, err := s.Info(chain("a")); !errdefs.IsNotFound(err) {
		t.Errorf("Info after failed unpack: %v", err)
	}
	assertEmpty(t, root)
}

func TestUnpackHostileLeavesNothing(t *testing.T) {
	s, root := open(t)
	var plain bytes.Buffer
	tw := tar.NewWriter(&plain)
	tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: root})
	tw.WriteHeader(&tar.Header{Name: "a/evil", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	_, err := s.Unpack(t.Context(), chain("a"), digest.FromBytes(plain.Bytes()), bytes.NewReader(plain.Bytes()))
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("hostile layer: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "evil")); err == nil {
		t.Error("hostile layer wrote outside")
	}
	assertEmpty(t, root)
}

func TestUnpackInvalidIDs(t *testing.T) {
	s, _ := open(t)
	for _, c := range [][2]digest.Digest{{"sha256:../../etc", chain("x")}, {chain("x"), "nope"}} {
		if _, err := s.Unpack(t.Context(), c[0], c[1], bytes.NewReader(nil)); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Unpack(%s, %s): %v", c[0], c[1], err)
		}
	}
	if _, err := s.Info("sha256:../x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("Info of a bad chain ID: %v", err)
	}
}

// gatedReader counts the readers that were read and holds the first read
// until the gate opens, so that concurrent callers pile up.
type gatedReader struct {
	r     io.Reader
	gate  <-chan struct{}
	used  *atomic.Int32
	first sync.Once
	fail  bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.first.Do(func() {
		g.used.Add(1)
		<-g.gate
	})
	if g.fail {
		return 0, errors.New("connection reset")
	}
	return g.r.Read(p)
}

func TestUnpackConcurrentShares(t *testing.T) {
	s, root := open(t)
	l := makeLayer(t, "a", "b")
	gate := make(chan struct{})
	var used atomic.Int32
	var wg sync.WaitGroup
	infos := make([]Info, 8)
	errs := make([]error, 8)
	for i := range infos {
		wg.Go(func() {
			infos[i], errs[i] = s.Unpack(t.Context(), chain("a"), l.diffID, &gatedReader{r: bytes.NewReader(l.gz), gate: gate, used: &used})
		})
	}
	time.Sleep(100 * time.Millisecond)
	close(gate)
	wg.Wait()
	for i := range infos {
		if errs[i] != nil || infos[i] != infos[0] {
			t.Errorf("caller %d: %+v, %v", i, infos[i], errs[i])
		}
	}
	if n := used.Load(); n != 1 {
		t.Errorf("%d readers were read, want 1 shared unpack", n)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "layers"))
	if len(entries) != 1 {
		t.Errorf("layers/ holds %d entries, want 1", len(entries))
	}
}

func TestUnpackWaiterRetriesAfterLeaderFails(t *testing.T) {
	s, _ := open(t)
	l := makeLayer(t, "a", "b")
	gate := make(chan struct{})
	var used atomic.Int32
	leaderErr := make(chan error, 1)
	go func() {
		_, err := s.Unpack(t.Context(), chain("a"), l.diffID, &gatedReader{r: bytes.NewReader(l.gz), gate: gate, used: &used, fail: true})
		leaderErr <- err
	}()
	for used.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	follower := make(chan error, 1)
	go func() {
		_, err := s.Unpack(t.Context(), chain("a"), l.diffID, bytes.NewReader(l.gz))
		follower <- err
	}()
	time.Sleep(50 * time.Millisecond)
	close(gate)
	if err := <-leaderErr; err == nil {
		t.Error("leader with a failing reader succeeded")
	}
	if err := <-follower; err != nil {
		t.Errorf("follower: %v", err)
	}
	if _, err := s.Info(chain("a")); err != nil {
		t.Errorf("Info: %v", err)
	}
}

func TestOpenCleansAndRemove(t *testing.T) {
	s, root := open(t)
	l := makeLayer(t, "a", "b")
	if _, err := s.Unpack(t.Context(), chain("a"), l.diffID, bytes.NewReader(l.gz)); err != nil {
		t.Fatal(err)
	}
	for _, leftover := range []string{".unpack-123-456/fs/x", ".remove-789/fs/y"} {
		p := filepath.Join(root, "layers", leftover)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, nil, 0o644)
	}
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(filepath.Join(root, "layers"))
	if len(entries) != 1 || entries[0].Name() != chain("a").Encoded() {
		t.Errorf("after Open layers/ holds %v", entries)
	}
	if err := s.Remove(chain("a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(chain("a")); err != nil {
		t.Errorf("Remove of an absent layer: %v", err)
	}
	if _, err := s.Info(chain("a")); !errdefs.IsNotFound(err) {
		t.Errorf("Info after Remove: %v", err)
	}
	if list, err := s.List(); err != nil || len(list) != 0 {
		t.Errorf("List after Remove: %v %v", list, err)
	}
	assertEmpty(t, root)
}

func TestUnpackDifferentLayersInParallel(t *testing.T) {
	s, _ := open(t)
	var wg sync.WaitGroup
	errs := make([]error, 6)
	for i := range errs {
		l := makeLayer(t, "dir/", "", "dir/file", strings.Repeat("y", i*1000))
		wg.Go(func() {
			_, errs[i] = s.Unpack(t.Context(), chain(strconv.Itoa(i)), l.diffID, bytes.NewReader(l.gz))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("layer %d: %v", i, err)
		}
	}
	if list, err := s.List(); err != nil || len(list) != len(errs) {
		t.Errorf("List: %d layers, %v", len(list), err)
	}
}

// BenchmarkUnpackGzip measures a whole layer unpack: gunzip, diff ID
// digest, apply, usage walk and commit, for 2000 files of 4 KiB.
func BenchmarkUnpackGzip(b *testing.B) {
	var files []string
	for i := range 2000 {
		if i%100 == 0 {
			files = append(files, fmt.Sprintf("d%d/", i/100), "")
		}
		files = append(files, fmt.Sprintf("d%d/f%d", i/100, i), strings.Repeat(strconv.Itoa(i), 4096)[:4096])
	}
	l := makeLayer(b, files...)
	s, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(l.gz)))
	for i := 0; b.Loop(); i++ {
		c := chain(strconv.Itoa(i))
		if _, err := s.Unpack(b.Context(), c, l.diffID, bytes.NewReader(l.gz)); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		s.Remove(c)
		b.StartTimer()
	}
}

// Commit moves a directory in as a layer; a second commit of the same
// chain ID keeps the first and removes its own directory.
func TestCommitDir(t *testing.T) {
	s, root := open(t)
	mk := func(content string) string {
		d, err := os.MkdirTemp(root, "upper-")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	first := mk("first")
	diffID := digest.FromString("diff")
	info, err := s.Commit(t.Context(), chain("c"), diffID, first)
	if err != nil {
		t.Fatal(err)
	}
	if info.DiffID != diffID || info.Inodes != 2 {
		t.Fatalf("info %+v", info)
	}
	if _, err := os.Stat(first); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("committed dir still in place: %v", err)
	}
	second := mk("second")
	if _, err := s.Commit(t.Context(), chain("c"), diffID, second); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(second); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("duplicate commit left its dir: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(s.Dir(chain("c")), "f"))
	if err != nil || string(b) != "first" {
		t.Fatalf("layer content %q %v", b, err)
	}
	testutil.CheckDu(t, s.Dir(chain("c")), info.Size, info.Inodes)

	// Commit syncs nothing: a power loss may leave the layer with an
	// empty (or no) info, which Open removes as unfinished; an unpacked
	// layer and a readable committed one stay.
	l := makeLayer(t, "a", "b")
	if _, err := s.Unpack(t.Context(), chain("a"), l.diffID, bytes.NewReader(l.gz)); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"d", "e"} {
		if _, err := s.Commit(t.Context(), chain(name), diffID, mk(name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Truncate(filepath.Join(root, "layers", chain("d").Encoded(), infoFile), 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "layers", chain("e").Encoded(), infoFile)); err != nil {
		t.Fatal(err)
	}
	s, err = Open(root)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s.List()
	var got []digest.Digest
	for _, i := range list {
		got = append(got, i.ChainID)
	}
	slices.Sort(got)
	want := []digest.Digest{chain("a"), chain("c")}
	slices.Sort(want)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("after Open: %v %v, want %v", got, err, want)
	}
	for _, name := range []string{"d", "e"} {
		if _, err := os.Stat(filepath.Join(root, "layers", chain(name).Encoded())); !os.IsNotExist(err) {
			t.Errorf("layer %s with a lost info is still there: %v", name, err)
		}
	}
}
