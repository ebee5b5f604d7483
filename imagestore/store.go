package imagestore

import (
	"context"
	"fmt"
	"io"

	"github.com/containerd/errdefs"
)

// Store is the image store. Open it with Open.
//
// CONTRACT STUB: the method set below is the API that cri/ and dockerapi/
// code against; the bodies are being written (imagestore helper).
type Store struct {
	cfg Config
}

var errTODO = fmt.Errorf("image store: %w", errdefs.ErrNotImplemented)

// Open opens (creating if needed) the store under cfg.Root, cleans partial
// ingests and unfinished unpacks, and validates the metadata.
func Open(ctx context.Context, cfg Config) (*Store, error) { return &Store{cfg: cfg}, nil }

// Close releases the metadata database.
func (s *Store) Close() error { return nil }

// Pull fetches ref (tag or digest reference) and its layers, unpacks them,
// and records the image with ref as tag or repo digest. Concurrent pulls of
// the same image share the work.
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	return nil, errTODO
}

// Push uploads the image named ref to the registry of ref.
func (s *Store) Push(ctx context.Context, ref string, opts PushOptions) error { return errTODO }

// Get resolves a full or short (>= 3 hex chars, unique) image ID, a digest
// "sha256:...", a name (normalized; default tag latest) or a name@digest.
// Unknown names give an error wrapping errdefs.ErrNotFound.
func (s *Store) Get(ctx context.Context, nameOrID string) (*Image, error) { return nil, errTODO }

// List returns every image.
func (s *Store) List(ctx context.Context) ([]*Image, error) { return nil, errTODO }

// Tag makes target (a name, default tag latest) point at the image source
// names. A tag that pointed elsewhere moves.
func (s *Store) Tag(ctx context.Context, source, target string) error { return errTODO }

// Remove removes a name or an image. Named by tag: the tag goes, and the
// image with it when that was its last name. Named by ID or digest: the
// image goes with all its names (several tags need opts.Force, else
// errdefs.ErrConflict). Layers no image uses are removed by GC.
func (s *Store) Remove(ctx context.Context, nameOrID string, opts RemoveOptions) (Removed, error) {
	return Removed{}, errTODO
}

// GC removes blobs and unpacked layers that no image references and that no
// snapshot uses.
func (s *Store) GC(ctx context.Context) error { return errTODO }

// Usage reports the bytes and inodes the store occupies (matching du).
func (s *Store) Usage(ctx context.Context) (Usage, error) { return Usage{}, errTODO }

// Save writes the named images to w in the given format.
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string, format ArchiveFormat) error {
	return errTODO
}

// Load imports every image of an OCI layout or docker-archive tarball.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]*Image, error) { return nil, errTODO }

// Prepare creates a writable snapshot with the image's layers as lower
// directories and returns the mounts for the container rootfs.
func (s *Store) Prepare(ctx context.Context, id, image string) ([]Mount, error) {
	return nil, errTODO
}

// View creates a read-only snapshot of the image (lower dirs only).
func (s *Store) View(ctx context.Context, id, image string) ([]Mount, error) { return nil, errTODO }

// RemoveSnapshot removes a snapshot; a missing one is not an error.
func (s *Store) RemoveSnapshot(ctx context.Context, id string) error { return errTODO }
