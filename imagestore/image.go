package imagestore

import (
	"fmt"
	"io"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/berth-dev/berth/imagestore/content"
	"github.com/berth-dev/berth/imagestore/meta"
)

// storedImage presents a stored image to go-containerregistry (for push)
// straight from the content store: blobs go out as they were pulled.
type storedImage struct {
	content *content.Store
	rec     meta.Image
}

func (s *Store) v1Image(rec meta.Image) (v1.Image, error) {
	img, err := partial.CompressedToImage(storedImage{content: s.content, rec: rec})
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", rec.ID, err)
	}
	return img, nil
}

func (i storedImage) RawConfigFile() ([]byte, error) { return i.rec.Config, nil }

func (i storedImage) MediaType() (types.MediaType, error) {
	return types.MediaType(i.rec.ManifestMediaType), nil
}

func (i storedImage) RawManifest() ([]byte, error) {
	f, err := i.content.Reader(i.rec.ManifestDigest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func (i storedImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	for _, l := range i.rec.Layers {
		if l.Digest.String() == h.String() {
			return storedLayer{content: i.content, l: l}, nil
		}
	}
	if h.String() == i.rec.ID.String() {
		return partial.ConfigLayer(i)
	}
	return nil, fmt.Errorf("image %s: layer %s: %w", i.rec.ID, h, errdefs.ErrNotFound)
}

// ConfigName lets partial skip hashing the config.
func (i storedImage) ConfigName() (v1.Hash, error) { return v1.NewHash(i.rec.ID.String()) }

type storedLayer struct {
	content *content.Store
	l       meta.Layer
}

func (l storedLayer) Digest() (v1.Hash, error) { return v1.NewHash(l.l.Digest.String()) }
func (l storedLayer) Size() (int64, error)     { return l.l.Size, nil }
func (l storedLayer) MediaType() (types.MediaType, error) {
	return types.MediaType(l.l.MediaType), nil
}
func (l storedLayer) DiffID() (v1.Hash, error) { return v1.NewHash(l.l.DiffID.String()) }
func (l storedLayer) Compressed() (io.ReadCloser, error) {
	return l.content.Reader(l.l.Digest)
}
