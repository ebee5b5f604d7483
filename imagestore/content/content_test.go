package content

import (
	"bytes"
	"crypto/rand"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

func randomBlob(t testing.TB, n int) ([]byte, digest.Digest) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	return b, digest.FromBytes(b)
}

func openStore(t testing.TB) (*Store, string) {
	t.Helper()
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// ingestEntries lists what is left in ingest/: after any finished or
// aborted write it must be empty.
func ingestEntries(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "ingest"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	s, root := openStore(t)
	data, d := randomBlob(t, 100_000)

	if err := s.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "blobs", "sha256", d.Encoded())
	if got := s.Path(d); got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
	onDisk, err := os.ReadFile(want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(onDisk, data) {
		t.Error("file on disk differs from what was put")
	}
	info, err := s.Info(d)
	if err != nil {
		t.Fatal(err)
	}
	if info != (Info{Digest: d, Size: int64(len(data))}) {
		t.Errorf("Info = %+v", info)
	}
	f, err := s.Reader(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("Reader returned different bytes")
	}
	if left := ingestEntries(t, root); len(left) != 0 {
		t.Errorf("ingest/ not empty after commit: %v", left)
	}
}

func TestUnknownSize(t *testing.T) {
	s, _ := openStore(t)
	data, d := randomBlob(t, 4096)
	if err := s.Put(d, -1, iotest.OneByteReader(bytes.NewReader(data))); err != nil {
		t.Fatal(err)
	}
	if info, err := s.Info(d); err != nil || info.Size != 4096 {
		t.Fatalf("Info = %+v, %v", info, err)
	}
}

func TestRejectedWrites(t *testing.T) {
	data, d := randomBlob(t, 1000)
	other := digest.FromString("something else")
	tests := []struct {
		name   string
		digest digest.Digest
		size   int64
		r      io.Reader
	}{
		{"wrong digest", other, int64(len(data)), bytes.NewReader(data)},
		{"wrong digest unknown size", other, -1, bytes.NewReader(data)},
		{"size too small", d, int64(len(data)) - 1, bytes.NewReader(data)},
		{"size too large", d, int64(len(data)) + 1, bytes.NewReader(data)},
		{"short stream", d, int64(len(data)), io.LimitReader(bytes.NewReader(data), 500)},
		{"short stream unknown size", d, -1, io.LimitReader(bytes.NewReader(data), 500)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, root := openStore(t)
			err := s.Put(tt.digest, tt.size, tt.r)
			if !errdefs.IsDataLoss(err) {
				t.Fatalf("Put: got %v, want a data loss error", err)
			}
			if _, err := s.Info(tt.digest); !errdefs.IsNotFound(err) {
				t.Errorf("rejected blob is visible: Info err = %v", err)
			}
			if left := ingestEntries(t, root); len(left) != 0 {
				t.Errorf("ingest/ not empty after a rejected write: %v", left)
			}
		})
	}
}

func TestReadError(t *testing.T) {
	s, root := openStore(t)
	_, d := randomBlob(t, 10)
	boom := errors.New("connection reset")
	err := s.Put(d, 10, iotest.ErrReader(boom))
	if !errors.Is(err, boom) {
		t.Fatalf("Put: got %v, want the reader's error", err)
	}
	if left := ingestEntries(t, root); len(left) != 0 {
		t.Errorf("ingest/ not empty: %v", left)
	}
}

func TestInvalidDigest(t *testing.T) {
	s, _ := openStore(t)
	for _, d := range []digest.Digest{"", "sha256:../../etc", "sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e"} {
		if _, err := s.Writer(d, 0); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Writer(%q): got %v, want invalid argument", d, err)
		}
		if _, err := s.Reader(d); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Reader(%q): got %v, want invalid argument", d, err)
		}
		if p := s.Path(d); p != "" {
			t.Errorf("Path(%q) = %q, want empty", d, p)
		}
	}
}

func TestMissing(t *testing.T) {
	s, _ := openStore(t)
	d := digest.FromString("absent")
	if _, err := s.Reader(d); !errdefs.IsNotFound(err) {
		t.Errorf("Reader: got %v, want not found", err)
	}
	if _, err := s.Info(d); !errdefs.IsNotFound(err) {
		t.Errorf("Info: got %v, want not found", err)
	}
}

func TestConcurrentWritersSameBlob(t *testing.T) {
	s, root := openStore(t)
	data, d := randomBlob(t, 1<<20)
	const writers = 8

	// Open all writers first and interleave their writes, so that every
	// ingest is in flight at the same time.
	ws := make([]*Writer, writers)
	for i := range ws {
		w, err := s.Writer(d, int64(len(data)))
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		ws[i] = w
	}
	if n := len(ingestEntries(t, root)); n != writers {
		t.Fatalf("%d ingest files for %d writers: temp names collide", n, writers)
	}
	var wg sync.WaitGroup
	errs := make([]error, writers)
	for i, w := range ws {
		wg.Go(func() {
			for off := 0; off < len(data); off += 4096 {
				if _, err := w.Write(data[off:min(off+4096, len(data))]); err != nil {
					errs[i] = err
					return
				}
			}
			errs[i] = w.Commit()
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	got, err := os.ReadFile(s.Path(d))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) {
		t.Error("blob corrupted by concurrent writers")
	}
	if left := ingestEntries(t, root); len(left) != 0 {
		t.Errorf("ingest/ not empty: %v", left)
	}
}

func TestCommitWhenAlreadyPresent(t *testing.T) {
	s, _ := openStore(t)
	data, d := randomBlob(t, 100)
	if err := s.Put(d, 100, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	w, err := s.Writer(d, 100)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatalf("second commit of the same blob: %v", err)
	}
	// Put of a present blob does not need the data again.
	if err := s.Put(d, 100, iotest.ErrReader(errors.New("must not be read"))); err != nil {
		t.Fatalf("Put of a present blob: %v", err)
	}
}

func TestLeftoverIngestCleanedOnOpen(t *testing.T) {
	s, root := openStore(t)
	data, d := randomBlob(t, 1000)
	w, err := s.Writer(d, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data[:500]); err != nil {
		t.Fatal(err)
	}
	// Simulate a crash: the writer is never committed nor closed.
	if len(ingestEntries(t, root)) != 1 {
		t.Fatal("expected one ingest in flight")
	}
	if _, err := s.Info(d); !errdefs.IsNotFound(err) {
		t.Fatalf("partial ingest is visible: %v", err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if left := ingestEntries(t, root); len(left) != 0 {
		t.Errorf("Open left partial ingests: %v", left)
	}
}

func TestAbortAndIdempotentClose(t *testing.T) {
	s, root := openStore(t)
	data, d := randomBlob(t, 10)
	w, err := s.Writer(d, 10)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := w.Commit(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("Commit after Close: got %v, want failed precondition", err)
	}
	if _, err := s.Info(d); !errdefs.IsNotFound(err) {
		t.Errorf("aborted blob is visible: %v", err)
	}
	if left := ingestEntries(t, root); len(left) != 0 {
		t.Errorf("ingest/ not empty: %v", left)
	}
}

func TestWalkAndDelete(t *testing.T) {
	s, root := openStore(t)
	want := map[digest.Digest]int64{}
	for _, n := range []int{0, 1, 4096} {
		data, d := randomBlob(t, n)
		if err := s.Put(d, int64(n), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		want[d] = int64(n)
	}
	// A stray file is not a blob and must not be reported.
	if err := os.WriteFile(filepath.Join(root, "blobs", "sha256", "not-a-digest"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	// An ingest in flight is not a blob either.
	w, err := s.Writer(digest.FromString("in flight"), -1)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	walk := func() map[digest.Digest]int64 {
		got := map[digest.Digest]int64{}
		if err := s.Walk(func(i Info) error { got[i.Digest] = i.Size; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := walk(); !maps.Equal(got, want) {
		t.Fatalf("Walk = %v, want %v", got, want)
	}

	stop := errors.New("stop")
	calls := 0
	if err := s.Walk(func(Info) error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Errorf("Walk did not stop at the first error: err %v after %d calls", err, calls)
	}

	var victim digest.Digest
	for d := range want {
		victim = d
		break
	}
	for range 2 {
		if err := s.Delete(victim); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	delete(want, victim)
	if got := walk(); !maps.Equal(got, want) {
		t.Fatalf("after Delete, Walk = %v, want %v", got, want)
	}
	if _, err := s.Reader(victim); !errdefs.IsNotFound(err) {
		t.Errorf("Reader of a deleted blob: %v", err)
	}
}

func TestBlobIsReadOnly(t *testing.T) {
	s, _ := openStore(t)
	data, d := randomBlob(t, 10)
	if err := s.Put(d, 10, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Path(d))
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != blobMode {
		t.Errorf("blob mode %v, want %v", perm, os.FileMode(blobMode))
	}
}

func BenchmarkPut32MiB(b *testing.B) {
	s, _ := openStore(b)
	data, d := randomBlob(b, 32<<20)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := s.Delete(d); err != nil {
			b.Fatal(err)
		}
		if err := s.Put(d, int64(len(data)), bytes.NewReader(data)); err != nil {
			b.Fatal(err)
		}
	}
}

// An Ingest publishes its blob under the digest of what was written, and
// an aborted one leaves nothing.
func TestIngestUnknownDigest(t *testing.T) {
	s, root := openStore(t)
	b, d := randomBlob(t, 4096)
	w, err := s.Ingest()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	if w.Digest() != d || w.Size() != 4096 {
		t.Fatalf("digest %s size %d, want %s 4096", w.Digest(), w.Size(), d)
	}
	r, err := s.Reader(d)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if !bytes.Equal(got, b) {
		t.Fatal("blob content differs")
	}
	aborted, err := s.Ingest()
	if err != nil {
		t.Fatal(err)
	}
	aborted.Write([]byte("never"))
	aborted.Close()
	if e := ingestEntries(t, root); len(e) != 0 {
		t.Fatalf("ingest left %v", e)
	}
	if _, err := s.Info(digest.FromString("never")); !errdefs.IsNotFound(err) {
		t.Fatalf("aborted ingest visible: %v", err)
	}
}
