package imagestore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore/diff"
	"github.com/berth-dev/berth/imagestore/meta"
	"github.com/berth-dev/berth/imagestore/snapshot"
)

// What a build needs of the store: snapshots over a list of layers rather
// than an image, a step's changes committed as a layer, a config and
// manifest written for a list of layers with several tags at once, and a
// cache of step results. A build step costs no fsync and no blob: its
// snapshot is ephemeral (volatile overlay, unsynced record), its layer's
// directory is moved into the layer store unsynced, and the layer's tar
// is only hashed (the diff ID) until a push or a save writes it; the
// image a build tags costs one syncfs, so that it survives a power loss
// with its layers. Layers a build produced or took from an image or
// the cache are held by a Lease until the build recorded them (in the
// cache, an image) or gave up, so that GC (an image removal, a prune) never
// takes them from under it.

// Lease keeps blobs and layers from GC while a build uses them. Release it
// when the build ends; what it held is then GC's like anything else.
type Lease struct {
	s      *Store
	mu     sync.Mutex
	blobs  map[digest.Digest]bool
	chains map[digest.Digest]bool
}

// NewLease starts a lease.
func (s *Store) NewLease() *Lease {
	l := &Lease{s: s, blobs: map[digest.Digest]bool{}, chains: map[digest.Digest]bool{}}
	s.leaseMu.Lock()
	if s.leases == nil {
		s.leases = map[*Lease]bool{}
	}
	s.leases[l] = true
	s.leaseMu.Unlock()
	return l
}

// Release ends the lease. It is idempotent.
func (l *Lease) Release() {
	l.s.leaseMu.Lock()
	delete(l.s.leases, l)
	l.s.leaseMu.Unlock()
}

// hold adds layers to the lease; callers hold s.gcMu (shared) so that no
// GC runs between finding the layers and holding them.
func (l *Lease) hold(layers []Layer, blobs ...digest.Digest) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, ly := range layers {
		l.blobs[ly.Digest], l.chains[ly.ChainID] = true, true
	}
	for _, b := range blobs {
		l.blobs[b] = true
	}
}

// leased returns what every lease holds; called by GC with gcMu held
// exclusively.
func (s *Store) leased() (blobs, chains map[digest.Digest]bool) {
	blobs, chains = map[digest.Digest]bool{}, map[digest.Digest]bool{}
	s.leaseMu.Lock()
	defer s.leaseMu.Unlock()
	for l := range s.leases {
		l.mu.Lock()
		for b := range l.blobs {
			blobs[b] = true
		}
		for c := range l.chains {
			chains[c] = true
		}
		l.mu.Unlock()
	}
	return blobs, chains
}

// Image resolves an image as Get does and holds its layers.
func (l *Lease) Image(ctx context.Context, nameOrID string) (*Image, error) {
	l.s.gcMu.RLock()
	defer l.s.gcMu.RUnlock()
	r, err := l.s.resolve(ctx, nameOrID)
	if err != nil {
		return nil, err
	}
	img, err := toImage(r)
	if err != nil {
		return nil, err
	}
	l.hold(img.Layers, r.ID, r.ManifestDigest)
	return img, nil
}

// layerDirs returns the lower dirs of layers (base first), topmost first,
// checking that each is unpacked.
func (s *Store) layerDirs(layers []Layer) ([]string, error) {
	dirs := make([]string, 0, len(layers))
	for i := len(layers) - 1; i >= 0; i-- {
		if _, err := s.layers.Info(layers[i].ChainID); err != nil {
			return nil, err
		}
		dirs = append(dirs, s.layers.Dir(layers[i].ChainID))
	}
	return dirs, nil
}

// LayerDirs returns the unpacked directories of layers (base first),
// topmost first as overlay stacks them, for reading them without a mount.
// The caller holds the layers (a lease).
func (s *Store) LayerDirs(layers []Layer) ([]string, error) {
	return s.layerDirs(layers)
}

// PrepareBuild creates a writable snapshot over layers (base first; none
// for an empty root) whose changes CommitSnapshot can turn into a layer.
// Build snapshots are ephemeral (snapshot.Options): the builder removes
// what a killed berthd left, so their records cost no fsync.
func (s *Store) PrepareBuild(ctx context.Context, id string, layers []Layer) ([]Mount, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	lowers, err := s.layerDirs(layers)
	if err != nil {
		return nil, fmt.Errorf("prepare build snapshot %s: %w", id, err)
	}
	// Build snapshots are the builder's to remove after a restart: no
	// fsync for their records.
	ms, err := s.snaps.PrepareDiffable(id, lowers, snapshot.Options{Ephemeral: true})
	if err != nil {
		return nil, fmt.Errorf("prepare build snapshot %s: %w", id, err)
	}
	return toMounts(ms), nil
}

// ViewLayers creates a read-only, ephemeral snapshot of layers (base
// first, at least one), as a build reads a stage or an image.
func (s *Store) ViewLayers(ctx context.Context, id string, layers []Layer) ([]Mount, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	lowers, err := s.layerDirs(layers)
	if err != nil {
		return nil, fmt.Errorf("view snapshot %s: %w", id, err)
	}
	ms, err := s.snaps.View(id, lowers, snapshot.Options{Ephemeral: true})
	if err != nil {
		return nil, fmt.Errorf("view snapshot %s: %w", id, err)
	}
	return toMounts(ms), nil
}

// MediaTypeLayerTar is the media type of the layers builds produce: plain
// tars, as docker's own store keeps them; compressing is a push's
// business.
const MediaTypeLayerTar = ocispec.MediaTypeImageLayer //nolint:staticcheck // the uncompressed OCI layer type is what is meant

// CommitSnapshot turns the changes of the build snapshot id (unmounted by
// the caller) into a layer on top of the chain parent ("" for none): the
// upper dir moves into the layer store as the layer's directory, and the
// digest of its tar (imagestore/diff) is the diff ID. The tar itself is not
// written: most layers of a build (intermediate stages', steps a later one
// replaces) never leave the store, and the blob of one that does is made
// from its directory when a push or a save needs it (layerBlob). The
// snapshot is removed. A snapshot without changes gives nil and no layer,
// as BuildKit drops empty layers. The new layer is held by lease.
func (s *Store) CommitSnapshot(ctx context.Context, lease *Lease, id string, parent digest.Digest) (*Layer, error) {
	l, err := s.commitSnapshot(ctx, lease, id, parent)
	if err != nil {
		return nil, fmt.Errorf("commit snapshot %s: %w", id, err)
	}
	return l, nil
}

func (s *Store) commitSnapshot(ctx context.Context, lease *Lease, id string, parent digest.Digest) (*Layer, error) {
	upper, err := s.snaps.UpperDir(id)
	if err != nil {
		return nil, err
	}
	if _, err := s.snaps.Stat(id); err != nil {
		return nil, err
	}
	h := &hashCounter{h: sha256.New()}
	st, err := diff.Write(ctx, upper, h, diff.Options{Clean: true})
	if err != nil {
		return nil, err
	}
	if st.Entries == 0 {
		return nil, s.snaps.Remove(id)
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	d := digest.NewDigest(digest.SHA256, h.h)
	chain := d
	if parent != "" {
		chain = identity.ChainID([]digest.Digest{parent, d})
	}
	layer := Layer{Digest: d, MediaType: MediaTypeLayerTar, Size: h.n, DiffID: d, ChainID: chain}
	lease.hold([]Layer{layer})
	if _, err := s.layers.Commit(ctx, chain, d, upper); err != nil {
		return nil, err
	}
	if err := s.snaps.Remove(id); err != nil {
		return nil, err
	}
	return &layer, nil
}

// hashCounter hashes and counts what is written to it.
type hashCounter struct {
	h hash.Hash
	n int64
}

func (w *hashCounter) Write(p []byte) (int, error) {
	w.h.Write(p)
	w.n += int64(len(p))
	return len(p), nil
}

// madeFromDir says whether a layer's blob can be made from its directory
// when it is missing: a plain tar whose digest is its diff ID, as builds
// commit them (and the check of the digest while writing it decides).
func madeFromDir(l meta.Layer) bool {
	return l.MediaType == MediaTypeLayerTar && l.Digest == l.DiffID
}

// layerBlob makes sure the blob of layer l is stored. A layer a build
// committed has none until a push or a save needs it: it is then written
// from the layer's directory with imagestore/diff, which writes the same
// tree as the same tar, and committed only if it has the layer's digest
// and size (else errdefs.ErrDataLoss: the directory changed).
func (s *Store) layerBlob(ctx context.Context, l meta.Layer) error {
	if _, err := s.content.Info(l.Digest); !errdefs.IsNotFound(err) {
		return err
	}
	if !madeFromDir(l) {
		return fmt.Errorf("layer %s: %w", l.Digest, errdefs.ErrNotFound)
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	if _, err := s.layers.Info(l.ChainID); err != nil {
		return fmt.Errorf("layer %s: no blob and %w", l.Digest, err)
	}
	w, err := s.content.Writer(l.Digest, l.Size)
	if err != nil {
		return err
	}
	defer w.Close()
	if _, err := diff.Write(ctx, s.layers.Dir(l.ChainID), w, diff.Options{}); err != nil {
		return fmt.Errorf("write the blob of layer %s from its directory: %w", l.Digest, err)
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("write the blob of layer %s from its directory: %w", l.Digest, err)
	}
	return nil
}

// ImageCommit describes an image to record.
type ImageCommit struct {
	// Config is the image config, whose rootfs.diff_ids must be the
	// layers' diff IDs.
	Config []byte
	Layers []Layer
	// Tags name the image ("name[:tag]"); all are set in one transaction.
	Tags []string
}

// CommitImage writes the config and an OCI manifest of a built image and
// records it with its tags at once: a crash leaves the image either
// recorded with every tag or not at all. Tags that named other images move.
func (s *Store) CommitImage(ctx context.Context, c ImageCommit) (*Image, error) {
	img, err := s.commitImage(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("commit image: %w", err)
	}
	return img, nil
}

func (s *Store) commitImage(ctx context.Context, c ImageCommit) (*Image, error) {
	var tags []string
	for _, t := range c.Tags {
		nt, err := parseTag(t)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(tags, nt.String()) {
			tags = append(tags, nt.String())
		}
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(c.Config, &cfg); err != nil {
		return nil, fmt.Errorf("decode config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(c.Layers) {
		return nil, fmt.Errorf("%w: config lists %d diff IDs for %d layers", errdefs.ErrInvalidArgument, len(cfg.RootFS.DiffIDs), len(c.Layers))
	}
	m := ocispec.Manifest{
		Versioned: specsVersioned(),
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(c.Config), Size: int64(len(c.Config))},
		Layers:    []ocispec.Descriptor{},
	}
	rec := meta.Image{ID: m.Config.Digest, ManifestMediaType: m.MediaType, Config: c.Config, Pulled: time.Now().UTC()}
	for i, l := range c.Layers {
		if cfg.RootFS.DiffIDs[i] != l.DiffID {
			return nil, fmt.Errorf("%w: layer %d has diff ID %s, the config says %s", errdefs.ErrInvalidArgument, i, l.DiffID, cfg.RootFS.DiffIDs[i])
		}
		m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: l.MediaType, Digest: l.Digest, Size: l.Size})
		rec.Layers = append(rec.Layers, meta.Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, DiffID: l.DiffID, ChainID: l.ChainID})
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	rec.ManifestDigest = digest.FromBytes(mb)
	rec.Size = int64(len(c.Config) + len(mb))
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	for i, l := range c.Layers {
		if _, err := s.content.Info(l.Digest); err != nil && !(errdefs.IsNotFound(err) && madeFromDir(rec.Layers[i])) {
			return nil, err
		}
		info, err := s.layers.Info(l.ChainID)
		if err != nil {
			return nil, err
		}
		rec.Layers[i].UnpackedSize = info.Size
		rec.Size += l.Size
	}
	// The image's record is durable (meta syncs it): so must be the
	// layers it needs, which its build committed unsynced and without
	// blobs; else a power loss would leave an acknowledged image whose
	// layers Open drops. One syncfs for the whole build.
	if slices.ContainsFunc(rec.Layers, madeFromDir) {
		if err := s.layers.Sync(); err != nil {
			return nil, err
		}
	}
	if err := s.content.Put(rec.ID, int64(len(c.Config)), bytes.NewReader(c.Config)); err != nil {
		return nil, err
	}
	if err := s.content.Put(rec.ManifestDigest, int64(len(mb)), bytes.NewReader(mb)); err != nil {
		return nil, err
	}
	if err := s.meta.Put(rec, tags); err != nil {
		return nil, err
	}
	r, err := s.meta.Get(rec.ID)
	if err != nil {
		return nil, err
	}
	return toImage(r)
}

// CacheEntry is one build cache entry: the state after a build step.
type CacheEntry struct {
	Key      digest.Digest
	Layers   []Layer
	Config   []byte
	Created  time.Time
	LastUsed time.Time
}

// Cache returns the entry of key with its layers held, or an error
// wrapping errdefs.ErrNotFound when there is none (or its layers are gone).
func (l *Lease) Cache(ctx context.Context, key digest.Digest) (*CacheEntry, error) {
	l.s.gcMu.RLock()
	defer l.s.gcMu.RUnlock()
	rec, err := l.s.meta.GetCache(key)
	if err != nil {
		return nil, err
	}
	e := &CacheEntry{Key: rec.Key, Config: rec.Config, Created: rec.Created, LastUsed: rec.LastUsed}
	for _, ml := range rec.Layers {
		if _, err := l.s.layers.Info(ml.ChainID); err != nil {
			return nil, fmt.Errorf("cache record %s: %w", key, err)
		}
		e.Layers = append(e.Layers, Layer{Digest: ml.Digest, MediaType: ml.MediaType, Size: ml.Size, DiffID: ml.DiffID, ChainID: ml.ChainID})
	}
	l.hold(e.Layers)
	return e, nil
}

// PutBuildCache records entries in one transaction; an entry with an
// existing key replaces it. Their layers must be stored (held by the
// caller's lease).
func (s *Store) PutBuildCache(ctx context.Context, entries []CacheEntry) error {
	if len(entries) == 0 {
		return nil
	}
	recs := make([]meta.CacheRecord, 0, len(entries))
	for _, e := range entries {
		if err := e.Key.Validate(); err != nil {
			return fmt.Errorf("store build cache: key %q: %w: %w", e.Key, errdefs.ErrInvalidArgument, err)
		}
		r := meta.CacheRecord{Key: e.Key, Config: e.Config, Created: e.Created.UTC(), LastUsed: e.LastUsed.UTC()}
		for _, l := range e.Layers {
			r.Layers = append(r.Layers, meta.Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, DiffID: l.DiffID, ChainID: l.ChainID})
		}
		recs = append(recs, r)
	}
	if err := s.meta.PutCaches(recs); err != nil {
		return fmt.Errorf("store build cache: %w", err)
	}
	return nil
}

// TouchBuildCache sets the last use of the entries of keys to now.
func (s *Store) TouchBuildCache(ctx context.Context, keys []digest.Digest) error {
	if err := s.meta.TouchCaches(keys, time.Now().UTC()); err != nil {
		return fmt.Errorf("update build cache: %w", err)
	}
	return nil
}

// BuildCacheUsage is what the build cache holds.
type BuildCacheUsage struct {
	Entries int
	// Bytes counts the blobs and unpacked layers that only the build
	// cache keeps (what a full prune would free).
	Bytes int64
	// Records are the entries, each with the bytes of Bytes it holds
	// first (a layer two entries share is counted once, with the first).
	Records []BuildCacheRecordUsage
}

// BuildCacheRecordUsage is one build cache entry's share of the usage.
type BuildCacheRecordUsage struct {
	Key      digest.Digest
	Created  time.Time
	LastUsed time.Time
	Bytes    int64
}

// BuildCachePrune configures PruneBuildCache.
type BuildCachePrune struct {
	// Until keeps entries used (or created) after it; zero removes all.
	Until time.Time
}

// BuildCachePruned is what PruneBuildCache did.
type BuildCachePruned struct {
	// Deleted are the keys of the entries removed.
	Deleted []digest.Digest
	// Reclaimed is the size of the blobs and layers removed with them.
	Reclaimed int64
}

// PruneBuildCache removes build cache entries, then whatever blobs and
// layers no image, remaining entry, snapshot or running build uses.
func (s *Store) PruneBuildCache(ctx context.Context, opts BuildCachePrune) (BuildCachePruned, error) {
	recs, err := s.meta.ListCache()
	if err != nil {
		return BuildCachePruned{}, fmt.Errorf("prune build cache: %w", err)
	}
	var out BuildCachePruned
	for _, r := range recs {
		used := r.LastUsed
		if used.IsZero() {
			used = r.Created
		}
		if opts.Until.IsZero() || used.Before(opts.Until) {
			out.Deleted = append(out.Deleted, r.Key)
		}
	}
	if err := s.meta.DeleteCache(out.Deleted); err != nil {
		return BuildCachePruned{}, fmt.Errorf("prune build cache: %w", err)
	}
	n, err := s.gc(ctx)
	out.Reclaimed = n
	if err != nil {
		return out, fmt.Errorf("prune build cache: %w", err)
	}
	return out, nil
}

// BuildCacheUsage reports the entries and the space only they hold.
func (s *Store) BuildCacheUsage(ctx context.Context) (BuildCacheUsage, error) {
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	recs, err := s.meta.ListCache()
	if err != nil {
		return BuildCacheUsage{}, err
	}
	imgs, err := s.meta.List()
	if err != nil {
		return BuildCacheUsage{}, err
	}
	byImage := map[digest.Digest]bool{}
	for _, r := range imgs {
		for _, l := range r.Layers {
			byImage[l.ChainID] = true
		}
	}
	u := BuildCacheUsage{Entries: len(recs)}
	seen := map[digest.Digest]bool{}
	for _, r := range recs {
		ru := BuildCacheRecordUsage{Key: r.Key, Created: r.Created, LastUsed: r.LastUsed}
		for _, l := range r.Layers {
			if byImage[l.ChainID] || seen[l.ChainID] {
				continue
			}
			seen[l.ChainID] = true
			ru.Bytes += l.Size
			if info, err := s.layers.Info(l.ChainID); err == nil {
				ru.Bytes += info.Size
			}
		}
		u.Bytes += ru.Bytes
		u.Records = append(u.Records, ru)
	}
	return u, nil
}

// checkCache drops the cache records whose blobs are gone and unpacks
// again the layers whose directories vanished (Open's repair).
func (s *Store) checkCache(ctx context.Context) error {
	recs, err := s.meta.ListCache()
	if err != nil {
		return err
	}
	var drop []digest.Digest
	for _, r := range recs {
		if err := s.checkLayers(ctx, "build cache record "+r.Key.String(), r.Layers); err != nil {
			if errors.Is(err, context.Canceled) {
				return err
			}
			drop = append(drop, r.Key)
			s.repairs = append(s.repairs, fmt.Sprintf("removed build cache record %s: %v", r.Key, err))
		}
	}
	return s.meta.DeleteCache(drop)
}
