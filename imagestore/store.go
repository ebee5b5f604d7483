package imagestore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sync/singleflight"

	"github.com/berth-dev/berth/imagestore/content"
	"github.com/berth-dev/berth/imagestore/layer"
	"github.com/berth-dev/berth/imagestore/meta"
	"github.com/berth-dev/berth/imagestore/snapshot"
)

// Defaults for Config fields left zero.
const (
	DefaultStallTimeout           = time.Minute
	DefaultMaxConcurrentDownloads = 3
)

// Validate checks cfg; zero durations and counts take their defaults.
func (c Config) Validate() error {
	if c.Root == "" {
		return fmt.Errorf("image store config: root: %w: empty", errdefs.ErrInvalidArgument)
	}
	if c.StallTimeout < 0 || c.MaxConcurrentDownloads < 0 {
		return fmt.Errorf("image store config: %w: negative stall timeout or download limit", errdefs.ErrInvalidArgument)
	}
	return nil
}

// Store is the image store. Open it with Open.
type Store struct {
	cfg     Config
	meta    *meta.DB
	content *content.Store
	layers  *layer.Store
	snaps   *snapshot.Snapshotter

	// gcMu keeps GC from deleting blobs and layers that a pull or load has
	// committed but not yet recorded: writers of images hold it shared, GC
	// holds it exclusively.
	gcMu sync.RWMutex
	// flight shares downloads between concurrent pulls (keys: "image:"
	// manifest digest, "layer:" chain ID).
	flight singleflight.Group

	// leases are the builds' holds on blobs and layers (see Lease).
	leaseMu sync.Mutex
	leases  map[*Lease]bool

	repairs []string
}

// Open opens (creating if needed) the store under cfg.Root, cleans partial
// ingests and unfinished unpacks, and validates the metadata.
//
// Validation: a layer whose unpacked directory vanished but whose blob is
// still stored is unpacked again; an image whose manifest, config or layer
// blob vanished cannot be repaired here, so its record (and tags) is
// deleted and a pull brings it back. Repairs lists what was done. Blobs
// and layers no image references (a pull killed before its record was
// written) are then removed by GC.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.MaxConcurrentDownloads == 0 {
		cfg.MaxConcurrentDownloads = DefaultMaxConcurrentDownloads
	}
	if err := os.MkdirAll(cfg.Root, 0o711); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	s := &Store{cfg: cfg}
	var err error
	// The database first: its lock keeps a second process from cleaning
	// up the ingests and unpacks that the owner of the root has running.
	if s.meta, err = meta.Open(filepath.Join(cfg.Root, "meta.db"), meta.Options{}); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	if err := s.openStores(); err != nil {
		s.meta.Close()
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	if err := s.check(ctx); err != nil {
		s.meta.Close()
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	// Blobs and layers of a pull that was killed before its record was
	// written are garbage now.
	if err := s.GC(ctx); err != nil {
		s.meta.Close()
		return nil, fmt.Errorf("open image store %s: %w", cfg.Root, err)
	}
	return s, nil
}

func (s *Store) openStores() error {
	var err error
	if s.content, err = content.Open(s.cfg.Root); err != nil {
		return err
	}
	if s.layers, err = layer.Open(s.cfg.Root); err != nil {
		return err
	}
	if s.snaps, err = snapshot.New(s.cfg.Root); err != nil {
		return err
	}
	if err := os.RemoveAll(s.tmpDir()); err != nil {
		return fmt.Errorf("clean temp dir: %w", err)
	}
	return nil
}

// tmpDir holds spooled archives during Load; Open empties it.
func (s *Store) tmpDir() string { return filepath.Join(s.cfg.Root, "tmp") }

// check validates every image record against the blobs and layers on disk.
func (s *Store) check(ctx context.Context) error {
	recs, err := s.meta.List()
	if err != nil {
		return err
	}
	for _, r := range recs {
		if err := s.checkImage(ctx, r.Image); err != nil {
			if _, derr := s.meta.Delete(r.ID); derr != nil {
				return derr
			}
			s.repairs = append(s.repairs, fmt.Sprintf("removed image %s (tags %v): %v", r.ID, r.Tags, err))
		}
	}
	return s.checkCache(ctx)
}

func (s *Store) checkImage(ctx context.Context, img meta.Image) error {
	for _, d := range []digest.Digest{img.ManifestDigest, img.ID} {
		if _, err := s.content.Info(d); err != nil {
			return err
		}
	}
	return s.checkLayers(ctx, img.ID, img.Layers)
}

// checkLayers checks that the blobs of layers are stored and unpacks again
// the layers whose directories vanished; owner names them in repairs.
func (s *Store) checkLayers(ctx context.Context, owner any, layers []meta.Layer) error {
	for _, l := range layers {
		_, blobErr := s.content.Info(l.Digest)
		if blobErr != nil && !errdefs.IsNotFound(blobErr) {
			return blobErr
		}
		if _, err := s.layers.Info(l.ChainID); err == nil {
			// A build's layer has no blob until one is needed.
			if blobErr != nil && !madeFromDir(l) {
				return blobErr
			}
			continue
		} else if !errdefs.IsNotFound(err) {
			return err
		}
		if blobErr != nil {
			return blobErr
		}
		f, err := s.content.Reader(l.Digest)
		if err != nil {
			return err
		}
		_, err = s.layers.Unpack(ctx, l.ChainID, l.DiffID, f)
		f.Close()
		if err != nil {
			return err
		}
		s.repairs = append(s.repairs, fmt.Sprintf("unpacked missing layer %s of %v again", l.ChainID, owner))
	}
	return nil
}

// Repairs describes what Open did to make the metadata agree with the
// disk (empty when nothing was wrong).
func (s *Store) Repairs() []string { return slices.Clone(s.repairs) }

// Pin marks an image as pinned (CRI's Image.pinned: the kubelet's image
// GC leaves it alone).
func (s *Store) Pin(ctx context.Context, nameOrID string) error {
	return s.setPinned(ctx, nameOrID, true)
}

// Unpin clears the pinned mark of an image.
func (s *Store) Unpin(ctx context.Context, nameOrID string) error {
	return s.setPinned(ctx, nameOrID, false)
}

func (s *Store) setPinned(ctx context.Context, nameOrID string, pinned bool) error {
	r, err := s.resolve(ctx, nameOrID)
	if err == nil {
		err = s.meta.SetPinned(r.ID, pinned)
	}
	if err != nil {
		return fmt.Errorf("pin image %s: %w", nameOrID, err)
	}
	return nil
}

// Close releases the metadata database.
func (s *Store) Close() error { return s.meta.Close() }

// toImage converts a record into the public Image.
func toImage(r meta.Record) (*Image, error) {
	img := &Image{
		ID:                r.ID,
		RepoTags:          slices.Sorted(slices.Values(r.Tags)),
		RepoDigests:       slices.Clone(r.RepoDigests),
		ManifestDigest:    r.ManifestDigest,
		ManifestMediaType: r.ManifestMediaType,
		Size:              r.Size,
		Pinned:            r.Pinned,
		Pulled:            r.Pulled,
		RawConfig:         slices.Clone([]byte(r.Config)),
	}
	if img.RepoTags == nil {
		img.RepoTags = []string{}
	}
	for _, l := range r.Layers {
		img.UnpackedSize += l.UnpackedSize
		img.Layers = append(img.Layers, Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, DiffID: l.DiffID, ChainID: l.ChainID, UnpackedSize: l.UnpackedSize})
	}
	if err := json.Unmarshal(r.Config, &img.Config); err != nil {
		return nil, fmt.Errorf("decode config of image %s: %w: %w", r.ID, errdefs.ErrDataLoss, err)
	}
	return img, nil
}

// lowers returns the layer directories of an image, topmost first.
func (s *Store) lowers(ctx context.Context, image string) ([]string, error) {
	r, err := s.resolve(ctx, image)
	if err != nil {
		return nil, err
	}
	if len(r.Layers) == 0 {
		return nil, fmt.Errorf("image %s: %w: no layers", r.ID, errdefs.ErrFailedPrecondition)
	}
	var dirs []string
	for i := len(r.Layers) - 1; i >= 0; i-- {
		dirs = append(dirs, s.layers.Dir(r.Layers[i].ChainID))
	}
	return dirs, nil
}

func toMounts(ms []snapshot.Mount) []Mount {
	out := make([]Mount, 0, len(ms))
	for _, m := range ms {
		out = append(out, Mount{Type: m.Type, Source: m.Source, Options: slices.Clone(m.Options)})
	}
	return out
}

// Prepare creates a writable snapshot with the image's layers as lower
// directories and returns the mounts for the container rootfs.
func (s *Store) Prepare(ctx context.Context, id, image string) ([]Mount, error) {
	// Shared with GC so that the layers cannot vanish between the lookup
	// and the snapshot's record of them.
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	lowers, err := s.lowers(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %s: %w", id, err)
	}
	ms, err := s.snaps.Prepare(id, lowers)
	if err != nil {
		return nil, fmt.Errorf("prepare snapshot %s: %w", id, err)
	}
	return toMounts(ms), nil
}

// View creates a read-only snapshot of the image (lower dirs only).
func (s *Store) View(ctx context.Context, id, image string) ([]Mount, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	lowers, err := s.lowers(ctx, image)
	if err != nil {
		return nil, fmt.Errorf("view snapshot %s: %w", id, err)
	}
	ms, err := s.snaps.View(id, lowers, snapshot.Options{})
	if err != nil {
		return nil, fmt.Errorf("view snapshot %s: %w", id, err)
	}
	return toMounts(ms), nil
}

// Snapshots returns the IDs of every snapshot.
func (s *Store) Snapshots(_ context.Context) ([]string, error) {
	infos, err := s.snaps.List()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(infos))
	for _, i := range infos {
		ids = append(ids, i.ID)
	}
	return ids, nil
}

// RemoveSnapshot removes a snapshot; a missing one is not an error.
func (s *Store) RemoveSnapshot(ctx context.Context, id string) error {
	if err := s.snaps.Remove(id); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
		return fmt.Errorf("remove snapshot %s: %w", id, err)
	}
	return nil
}
