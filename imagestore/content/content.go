// Package content is Berth's content-addressed blob store.
//
// A blob lives at <root>/blobs/<algorithm>/<encoded digest> and is immutable
// once there. Writers stream into a uniquely named temp file under
// <root>/ingest/, and Commit makes the blob visible only after its size and
// digest were verified and its data reached the disk (fsync of the file,
// rename, fsync of the directory). A half-written blob is therefore never
// visible, and Open removes whatever ingests a crash left behind.
//
// Every method is safe for concurrent use: two writers of the same digest
// never see each other's temp file, and the last rename wins with identical
// content. One process owns a root, since Open discards every ingest in it.
package content

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

// blobMode is read-only: a blob never changes after commit, and a stray
// writer should fail rather than corrupt it.
const blobMode = 0o444

// Store is a blob store rooted at one directory. Open it with Open.
type Store struct {
	blobs  string
	ingest string
}

// Info describes a committed blob.
type Info struct {
	Digest digest.Digest
	Size   int64
}

// Open opens (creating if needed) the store under root and deletes the temp
// files of ingests that never committed.
func Open(root string) (*Store, error) {
	s := &Store{
		blobs:  filepath.Join(root, "blobs"),
		ingest: filepath.Join(root, "ingest"),
	}
	for _, dir := range []string{filepath.Join(s.blobs, digest.SHA256.String()), s.ingest} {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("open content store %s: %w", root, err)
		}
	}
	// Open runs before any writer of this root exists (daemon start), so
	// everything in ingest/ belongs to a writer that died.
	if err := os.RemoveAll(s.ingest); err != nil {
		return nil, fmt.Errorf("clean partial ingests in %s: %w", s.ingest, err)
	}
	if err := os.Mkdir(s.ingest, 0o700); err != nil {
		return nil, fmt.Errorf("open content store %s: %w", root, err)
	}
	return s, nil
}

// Path returns where the blob d is (or would be) stored, or "" when d is
// not a valid digest. It does not check that the blob exists.
func (s *Store) Path(d digest.Digest) string {
	p, err := s.blobPath(d)
	if err != nil {
		return ""
	}
	return p
}

// blobPath validates d before it becomes part of a path, so that no digest
// string can name a file outside blobs/.
func (s *Store) blobPath(d digest.Digest) (string, error) {
	if err := d.Validate(); err != nil {
		return "", fmt.Errorf("blob %q: %w: %w", d, errdefs.ErrInvalidArgument, err)
	}
	return filepath.Join(s.blobs, d.Algorithm().String(), d.Encoded()), nil
}

// Info returns the size of the blob d; errdefs.ErrNotFound if it is absent.
func (s *Store) Info(d digest.Digest) (Info, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return Info{}, err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return Info{}, fmt.Errorf("stat blob %s: %w", d, classify(err))
	}
	return Info{Digest: d, Size: fi.Size()}, nil
}

// Reader opens the blob d for reading; errdefs.ErrNotFound if it is absent.
// The caller closes the file.
func (s *Store) Reader(d digest.Digest) (*os.File, error) {
	p, err := s.blobPath(d)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, classify(err))
	}
	return f, nil
}

// Put stores the blob d of the given size (negative: unknown) read from r.
// When the blob is already present (with the expected size) Put returns
// nil without reading r.
func (s *Store) Put(d digest.Digest, size int64, r io.Reader) error {
	if info, err := s.Info(d); err == nil && (size < 0 || info.Size == size) {
		return nil
	}
	w, err := s.Writer(d, size)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		return fmt.Errorf("put blob %s: %w", d, err)
	}
	return w.Commit()
}

// Delete removes the blob d. An absent blob is not an error.
func (s *Store) Delete(d digest.Digest) error {
	p, err := s.blobPath(d)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	return nil
}

// Walk calls fn for every committed blob, in no particular order, and stops
// at the first error fn returns. Files whose names are not digests are
// skipped.
func (s *Store) Walk(fn func(Info) error) error {
	algs, err := os.ReadDir(s.blobs)
	if err != nil {
		return fmt.Errorf("walk blobs: %w", err)
	}
	for _, alg := range algs {
		if !alg.IsDir() {
			continue
		}
		entries, err := os.ReadDir(filepath.Join(s.blobs, alg.Name()))
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, e := range entries {
			d := digest.NewDigestFromEncoded(digest.Algorithm(alg.Name()), e.Name())
			if !e.Type().IsRegular() || d.Validate() != nil {
				continue
			}
			fi, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted while walking
			}
			if err != nil {
				return fmt.Errorf("walk blobs: %w", err)
			}
			if err := fn(Info{Digest: d, Size: fi.Size()}); err != nil {
				return err
			}
		}
	}
	return nil
}

// classify gives a file system error its errdefs class, keeping the cause.
func classify(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return err
}
