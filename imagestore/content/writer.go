package content

import (
	"fmt"
	"hash"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/internal/atomicfile"
)

// Writer streams one blob into the store. Write the data, then Commit;
// Close always (it aborts an uncommitted ingest). A Writer is not safe for
// concurrent use.
type Writer struct {
	store *Store
	// want is the expected digest; empty for an Ingest, whose digest is
	// whatever the data hashes to.
	want      digest.Digest
	size      int64 // expected size; negative when unknown
	f         *os.File
	hash      hash.Hash
	written   int64
	committed bool
	closed    bool
}

// Writer starts an ingest of the blob d of the given size (negative:
// unknown). Several writers of the same digest may run at once.
func (s *Store) Writer(d digest.Digest, size int64) (*Writer, error) {
	if err := d.Validate(); err != nil {
		return nil, fmt.Errorf("write blob %q: %w: %w", d, errdefs.ErrInvalidArgument, err)
	}
	// A unique name per writer: concurrent ingests of one digest (two pulls
	// sharing a base layer) must not write into the same file.
	f, err := os.CreateTemp(s.ingest, d.Encoded()+"-*")
	if err != nil {
		return nil, fmt.Errorf("write blob %s: create ingest: %w", d, err)
	}
	return &Writer{store: s, want: d, size: size, f: f, hash: d.Algorithm().Hash()}, nil
}

// Ingest starts an ingest of a blob whose digest is not known in advance
// (a layer being produced, say): Commit publishes it under the sha256 of
// what was written, which Digest then returns. The digest is verified by
// construction; everything else (size, atomic publication, durability) is
// as for Writer.
func (s *Store) Ingest() (*Writer, error) {
	f, err := os.CreateTemp(s.ingest, "new-*")
	if err != nil {
		return nil, fmt.Errorf("ingest blob: create ingest: %w", err)
	}
	return &Writer{store: s, size: -1, f: f, hash: digest.SHA256.Hash()}, nil
}

// Digest returns the blob's digest: the expected one, or for an Ingest the
// one Commit computed ("" before).
func (w *Writer) Digest() digest.Digest { return w.want }

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.written }

// Write appends p to the blob. Writing past the expected size fails at once
// rather than at Commit, so that an oversized stream is not read to its end.
func (w *Writer) Write(p []byte) (int, error) {
	if w.committed || w.closed {
		return 0, fmt.Errorf("write blob %s: %w: writer is finished", w.want, errdefs.ErrFailedPrecondition)
	}
	if w.size >= 0 && w.written+int64(len(p)) > w.size {
		return 0, fmt.Errorf("write blob %s: %w: more than the expected %d bytes", w.want, errdefs.ErrDataLoss, w.size)
	}
	n, err := w.f.Write(p)
	w.hash.Write(p[:n])
	w.written += int64(n)
	if err != nil {
		return n, fmt.Errorf("write blob %s: %w", w.want, err)
	}
	return n, nil
}

// Commit verifies the size and digest of what was written and makes the
// blob visible. A mismatch fails with errdefs.ErrDataLoss and discards the
// data. If another writer committed the same blob first, Commit succeeds.
func (w *Writer) Commit() error {
	if w.committed {
		return nil
	}
	if w.closed {
		return fmt.Errorf("commit blob %s: %w: writer is closed", w.want, errdefs.ErrFailedPrecondition)
	}
	if w.size >= 0 && w.written != w.size {
		w.Close()
		return fmt.Errorf("commit blob %s: %w: got %d bytes, expected %d", w.want, errdefs.ErrDataLoss, w.written, w.size)
	}
	if w.want == "" {
		w.want = digest.NewDigest(digest.SHA256, w.hash)
	}
	if got := digest.NewDigest(w.want.Algorithm(), w.hash); got != w.want {
		w.Close()
		return fmt.Errorf("commit blob %s: %w: content has digest %s", w.want, errdefs.ErrDataLoss, got)
	}
	if err := w.f.Chmod(blobMode); err != nil {
		w.Close()
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	// The data must be on disk before the rename publishes it, or a crash
	// could leave a visible blob with missing content.
	if err := w.f.Sync(); err != nil {
		w.Close()
		return fmt.Errorf("commit blob %s: sync: %w", w.want, err)
	}
	if err := w.f.Close(); err != nil {
		w.closed = true
		os.Remove(w.f.Name())
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	w.closed = true
	target := w.store.Path(w.want)
	dir := filepath.Dir(target)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	// rename(2) replaces atomically: a concurrent commit of the same digest
	// leaves one of two identical files, never a mix.
	if err := os.Rename(w.f.Name(), target); err != nil {
		os.Remove(w.f.Name())
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	w.committed = true
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("commit blob %s: %w", w.want, err)
	}
	return nil
}

// Close aborts the ingest unless it was committed. It is idempotent.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.f.Close()
	if err := os.Remove(w.f.Name()); err != nil {
		return fmt.Errorf("abort blob %s: %w", w.want, err)
	}
	return nil
}
