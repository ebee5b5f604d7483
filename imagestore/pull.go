package imagestore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	"golang.org/x/sync/errgroup"

	"github.com/berth-dev/berth/imagestore/meta"
)

// progressFunc serializes a caller's Progress callback.
type progressFunc func(Progress)

func serialProgress(f func(Progress)) progressFunc {
	if f == nil {
		return func(Progress) {}
	}
	var mu sync.Mutex
	return func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		f(p)
	}
}

func shortID(d digest.Digest) string {
	e := d.Encoded()
	if len(e) > 12 {
		e = e[:12]
	}
	return e
}

// Pull fetches ref (tag or digest reference) and its layers, unpacks them,
// and records the image with ref as tag or repo digest. Concurrent pulls of
// the same image share the work: the shared download runs on a context the
// callers' cancellation does not stop (the stall timeout bounds it).
func (s *Store) Pull(ctx context.Context, ref string, opts PullOptions) (*Image, error) {
	named, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	img, err := s.pull(ctx, named, opts)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", named, err)
	}
	return img, nil
}

func (s *Store) pull(ctx context.Context, named reference.Named, opts PullOptions) (*Image, error) {
	progress := serialProgress(opts.Progress)
	capability := "resolve"
	if _, ok := named.(reference.Canonical); ok {
		capability = "pull"
	}
	eps, err := s.endpoints(named, capability)
	if err != nil {
		return nil, err
	}
	platform := v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}
	if opts.Platform != nil {
		platform = v1.Platform{OS: opts.Platform.OS, Architecture: opts.Platform.Architecture, Variant: opts.Platform.Variant, OSVersion: opts.Platform.OSVersion}
	}
	var errs []error
	for _, ep := range eps {
		img, err := s.pullFrom(ctx, named, ep, platform, opts.Auth, progress)
		if err == nil {
			return img, nil
		}
		// A broken blob or a refused layer is not fixed by asking the next
		// host for the same digests.
		if errdefs.IsDataLoss(err) || errdefs.IsInvalidArgument(err) || ctx.Err() != nil {
			return nil, err
		}
		// Each error names its host (in the reference or the layer).
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	return nil, errors.Join(errs...)
}

// pulled is the outcome of the shared part of a pull.
type pulled struct {
	rec meta.Image
}

func (s *Store) pullFrom(ctx context.Context, named reference.Named, ep endpoint, platform v1.Platform, auth *Auth, progress progressFunc) (*Image, error) {
	ref, err := ep.ref(named)
	if err != nil {
		return nil, err
	}
	// Detached so that one caller giving up does not fail the other pulls
	// sharing this download; transfers still end at the stall timeout.
	shared := context.WithoutCancel(ctx)
	ropts, err := s.remoteOptions(shared, ep, auth)
	if err != nil {
		return nil, err
	}
	ropts = append(ropts, remote.WithPlatform(platform))
	desc, err := remote.Get(ref, ropts...)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", ref, classifyRemote(err))
	}
	// For an index this picks the manifest of the platform.
	img, err := desc.Image()
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s for %s: %w", ref, platform, classifyRemote(err))
	}
	mdig, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("read manifest of %s: %w", ref, classifyRemote(err))
	}
	progress(Progress{ID: refTagOrDigest(named), Status: "Pulling from " + reference.Path(named)})

	ch := s.flight.DoChan("image:"+mdig.String(), func() (any, error) {
		return s.fetchImage(shared, ep, img, progress)
	})
	var res singleResult
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case r := <-ch:
		res = singleResult{r.Val, r.Err}
	}
	if res.err != nil {
		return nil, res.err
	}
	rec := res.val.(pulled).rec
	rec.RepoDigests = []string{named.Name() + "@" + desc.Digest.String()}
	rec.Pulled = time.Now().UTC()
	var tags []string
	if t, ok := named.(reference.Tagged); ok {
		tags = []string{named.Name() + ":" + t.Tag()}
	}
	if err := s.meta.Put(rec, tags); err != nil {
		return nil, err
	}
	progress(Progress{ID: refTagOrDigest(named), Status: "Digest: " + desc.Digest.String()})
	r, err := s.meta.Get(rec.ID)
	if err != nil {
		return nil, err
	}
	return toImage(r)
}

type singleResult struct {
	val any
	err error
}

func refTagOrDigest(named reference.Named) string {
	if c, ok := named.(reference.Canonical); ok {
		return c.Digest().String()
	}
	if t, ok := named.(reference.Tagged); ok {
		return t.Tag()
	}
	return "latest"
}

// fetchImage brings the config, the layers and the manifest of img into
// the content and layer stores and returns the record to write. Nothing is
// recorded in the metadata here: the caller writes the record only after
// every blob and layer is committed.
func (s *Store) fetchImage(ctx context.Context, ep endpoint, img v1.Image, progress progressFunc) (any, error) {
	rawManifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", classifyRemote(err))
	}
	mt, err := img.MediaType()
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", classifyRemote(err))
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, fmt.Errorf("decode manifest: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	mdig := digest.FromBytes(rawManifest)
	configID := digest.Digest(m.Config.Digest.String())

	// Already complete here: a re-pull costs one manifest request.
	if r, err := s.meta.Get(configID); err == nil && r.ManifestDigest == mdig && s.complete(r.Image) {
		for _, l := range r.Layers {
			progress(Progress{ID: shortID(l.Digest), Status: "Already exists"})
		}
		return pulled{rec: r.Image}, nil
	}

	rawConfig, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("fetch config %s from %s: %w", configID, ep.Host, classifyRemote(err))
	}
	if digest.FromBytes(rawConfig) != configID {
		return nil, fmt.Errorf("fetch config %s from %s: %w: digest mismatch", configID, ep.Host, errdefs.ErrDataLoss)
	}
	var cfg struct {
		RootFS struct {
			DiffIDs []digest.Digest `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("decode config %s: %w: %w", configID, errdefs.ErrInvalidArgument, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %w: %d layers but %d diff IDs", configID, errdefs.ErrInvalidArgument, len(m.Layers), len(diffIDs))
	}
	chainIDs := identity.ChainIDs(slices.Clone(diffIDs))

	layers := make([]meta.Layer, len(m.Layers))
	for i, l := range m.Layers {
		layers[i] = meta.Layer{Digest: digest.Digest(l.Digest.String()), MediaType: string(l.MediaType), Size: l.Size, DiffID: diffIDs[i], ChainID: chainIDs[i]}
		progress(Progress{ID: shortID(layers[i].Digest), Status: "Pulling fs layer"})
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(s.cfg.MaxConcurrentDownloads)
	for i := range layers {
		if i >= s.cfg.MaxConcurrentDownloads {
			progress(Progress{ID: shortID(layers[i].Digest), Status: "Waiting"})
		}
	}
	for i := range layers {
		g.Go(func() error {
			size, err := s.fetchLayer(gctx, ep, img, layers[i], progress)
			if err != nil {
				return fmt.Errorf("layer %s from registry %s: %w", layers[i].Digest, ep.Host, err)
			}
			layers[i].UnpackedSize = size
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := s.content.Put(configID, int64(len(rawConfig)), bytes.NewReader(rawConfig)); err != nil {
		return nil, fmt.Errorf("store config %s: %w", configID, err)
	}
	if err := s.content.Put(mdig, int64(len(rawManifest)), bytes.NewReader(rawManifest)); err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", mdig, err)
	}
	size := int64(len(rawConfig) + len(rawManifest))
	for _, l := range layers {
		size += l.Size
	}
	return pulled{rec: meta.Image{
		ID: configID, ManifestDigest: mdig, ManifestMediaType: string(mt),
		Size: size, Layers: layers, Config: rawConfig,
	}}, nil
}

// complete says whether every blob and layer of img is on disk.
func (s *Store) complete(img meta.Image) bool {
	for _, d := range []digest.Digest{img.ID, img.ManifestDigest} {
		if _, err := s.content.Info(d); err != nil {
			return false
		}
	}
	for _, l := range img.Layers {
		if _, err := s.content.Info(l.Digest); err != nil {
			return false
		}
		if _, err := s.layers.Info(l.ChainID); err != nil {
			return false
		}
	}
	return true
}

// fetchLayer makes sure the layer's blob and its unpacked chain are stored
// and returns the unpacked size. Concurrent calls for one chain share one
// download.
func (s *Store) fetchLayer(ctx context.Context, ep endpoint, img v1.Image, l meta.Layer, progress progressFunc) (int64, error) {
	// The wait is not cut short by ctx: the shared download watches its own
	// context and ends soon, and a pull must not return while its layers
	// are still being written. A shared run that another pull cancelled is
	// run again for this one.
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		r := <-s.flight.DoChan("layer:"+l.ChainID.String()+":"+l.Digest.String(), func() (any, error) {
			return s.fetchLayerOnce(ctx, ep, img, l, progress)
		})
		if r.Err == nil {
			return r.Val.(int64), nil
		}
		err = r.Err
		if ctx.Err() != nil || !errors.Is(err, context.Canceled) {
			return 0, err
		}
	}
	return 0, err
}

func (s *Store) fetchLayerOnce(ctx context.Context, ep endpoint, img v1.Image, l meta.Layer, progress progressFunc) (any, error) {
	id := shortID(l.Digest)
	_, blobErr := s.content.Info(l.Digest)
	if li, err := s.layers.Info(l.ChainID); err == nil {
		if blobErr == nil {
			progress(Progress{ID: id, Status: "Already exists"})
			return li.Size, nil
		}
		// Unpacked for another image with the same chain, but this blob
		// is not stored: fetch it so that save and push can use it.
		rc, err := s.openLayer(img, l)
		if err != nil {
			return nil, err
		}
		defer rc.Close()
		if err := s.content.Put(l.Digest, l.Size, s.counting(rc, id, l.Size, progress)); err != nil {
			return nil, classifyRemote(err)
		}
		progress(Progress{ID: id, Status: "Pull complete"})
		return li.Size, nil
	}
	if blobErr == nil {
		f, err := s.content.Reader(l.Digest)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		progress(Progress{ID: id, Status: "Extracting"})
		li, err := s.layers.Unpack(ctx, l.ChainID, l.DiffID, f)
		if err != nil {
			return nil, err
		}
		progress(Progress{ID: id, Status: "Pull complete"})
		return li.Size, nil
	}

	rc, err := s.openLayer(img, l)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	w, err := s.content.Writer(l.Digest, l.Size)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	// One pass over the network: the stream is checked against the blob
	// digest, copied into the content store and unpacked at once. ggcr's
	// Compressed() verifies the digest and fails the read at EOF, which the
	// unpacker reaches before it commits (it reads to EOF to check the diff
	// ID); TestRecompressedBlobRefused holds that in place.
	tee := io.TeeReader(s.counting(rc, id, l.Size, progress), w)
	li, err := s.layers.Unpack(ctx, l.ChainID, l.DiffID, tee)
	if err != nil {
		return nil, classifyRemote(err)
	}
	// Whatever the decompressor left unread still belongs to the blob and
	// to its digest. (A layer unpacked meanwhile matched its diff ID, so
	// it stays even if the blob is refused here; GC collects it.)
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return nil, classifyRemote(err)
	}
	if err := w.Commit(); err != nil {
		return nil, err
	}
	progress(Progress{ID: id, Status: "Download complete"})
	progress(Progress{ID: id, Status: "Pull complete"})
	return li.Size, nil
}

func (s *Store) openLayer(img v1.Image, l meta.Layer) (io.ReadCloser, error) {
	h, err := v1.NewHash(l.Digest.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	rl, err := img.LayerByDigest(h)
	if err != nil {
		return nil, classifyRemote(err)
	}
	rc, err := rl.Compressed()
	if err != nil {
		return nil, classifyRemote(err)
	}
	return rc, nil
}

// counting reports "Downloading" progress about every 512 KiB.
func (s *Store) counting(r io.Reader, id string, total int64, progress progressFunc) io.Reader {
	return &countingReader{r: r, id: id, total: total, progress: progress}
}

type countingReader struct {
	r        io.Reader
	id       string
	n, last  int64
	total    int64
	progress progressFunc
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n-c.last >= 512<<10 || (err == io.EOF && c.n != c.last) {
		c.last = c.n
		c.progress(Progress{ID: c.id, Status: "Downloading", Current: c.n, Total: c.total})
	}
	return n, err
}
