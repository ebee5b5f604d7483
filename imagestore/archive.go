package imagestore

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore/meta"
)

// Annotations naming an image in an OCI layout's index.json, as containerd
// and docker 25+ write them.
const (
	annotationImageName = "io.containerd.image.name"
	annotationRefName   = ocispec.AnnotationRefName
)

const (
	mediaTypeDockerManifest = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerConfig   = "application/vnd.docker.container.image.v1+json"
	mediaTypeDockerList     = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerLayer    = "application/vnd.docker.image.rootfs.diff.tar"
	mediaTypeDockerLayerGz  = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// dockerManifestEntry is one entry of a docker-archive manifest.json.
type dockerManifestEntry struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// Save writes the named images to w in the given format. Both formats are
// an OCI layout (oci-layout, index.json, blobs/sha256/...); DockerArchive
// adds docker's manifest.json and repositories, as docker 25+ does. An
// image named by tag is saved under that tag; named by ID or digest, under
// all its tags.
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string, format ArchiveFormat) error {
	if format != DockerArchive && format != OCIArchive {
		return fmt.Errorf("save images: %w: unknown archive format %d", errdefs.ErrInvalidArgument, format)
	}
	if len(refs) == 0 {
		return fmt.Errorf("save images: %w: no image named", errdefs.ErrInvalidArgument)
	}
	type saved struct {
		rec   meta.Record
		names []string
	}
	var images []*saved
	for _, ref := range refs {
		r, err := s.resolve(ctx, ref)
		if err != nil {
			return fmt.Errorf("save images: %w", err)
		}
		names := r.Tags
		if named, err := reference.ParseDockerRef(ref); err == nil && !isIDLike(ref, r) && slices.Contains(r.Tags, named.String()) {
			names = []string{named.String()}
		}
		i := slices.IndexFunc(images, func(x *saved) bool { return x.rec.ID == r.ID })
		if i < 0 {
			images = append(images, &saved{rec: r})
			i = len(images) - 1
		}
		for _, n := range names {
			if !slices.Contains(images[i].names, n) {
				images[i].names = append(images[i].names, n)
			}
		}
	}

	tw := tar.NewWriter(w)
	written := map[digest.Digest]bool{}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return fmt.Errorf("save images: %w", err)
		}
	}
	index := ocispec.Index{Versioned: specsVersioned(), MediaType: ocispec.MediaTypeImageIndex}
	var dockerManifest []dockerManifestEntry
	repositories := map[string]map[string]string{}
	for _, img := range images {
		r := img.rec
		blobs := []digest.Digest{r.ManifestDigest, r.ID}
		for _, l := range r.Layers {
			if err := s.layerBlob(ctx, l); err != nil {
				return fmt.Errorf("save image %s: %w", r.ID, err)
			}
			blobs = append(blobs, l.Digest)
		}
		for _, d := range blobs {
			if written[d] {
				continue
			}
			if err := s.writeBlob(ctx, tw, d); err != nil {
				return fmt.Errorf("save image %s: %w", r.ID, err)
			}
			written[d] = true
		}
		info, err := s.content.Info(r.ManifestDigest)
		if err != nil {
			return fmt.Errorf("save image %s: %w", r.ID, err)
		}
		desc := ocispec.Descriptor{MediaType: r.ManifestMediaType, Digest: r.ManifestDigest, Size: info.Size}
		entry := dockerManifestEntry{Config: blobPath(r.ID), RepoTags: []string{}}
		for _, l := range r.Layers {
			entry.Layers = append(entry.Layers, blobPath(l.Digest))
		}
		if len(img.names) == 0 {
			index.Manifests = append(index.Manifests, desc)
		}
		for _, n := range img.names {
			d := desc
			d.Annotations = map[string]string{annotationImageName: n}
			named, err := reference.ParseNormalizedNamed(n)
			if err != nil {
				return fmt.Errorf("save image %s: %w: %w", r.ID, errdefs.ErrDataLoss, err)
			}
			if t, ok := named.(reference.Tagged); ok {
				d.Annotations[annotationRefName] = t.Tag()
				repo := reference.FamiliarName(named)
				if repositories[repo] == nil {
					repositories[repo] = map[string]string{}
				}
				if len(r.Layers) > 0 {
					repositories[repo][t.Tag()] = r.Layers[len(r.Layers)-1].Digest.Encoded()
				}
			}
			index.Manifests = append(index.Manifests, d)
			entry.RepoTags = append(entry.RepoTags, reference.FamiliarString(named))
		}
		dockerManifest = append(dockerManifest, entry)
	}
	files := []struct {
		name string
		v    any
	}{
		{ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}},
		{ocispec.ImageIndexFile, index},
	}
	if format == DockerArchive {
		files = append(files, struct {
			name string
			v    any
		}{"manifest.json", dockerManifest}, struct {
			name string
			v    any
		}{"repositories", repositories})
	}
	for _, f := range files {
		b, err := json.Marshal(f.v)
		if err != nil {
			return fmt.Errorf("save images: %w", err)
		}
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: time.Unix(0, 0)}); err != nil {
			return fmt.Errorf("save images: %w", err)
		}
		if _, err := tw.Write(b); err != nil {
			return fmt.Errorf("save images: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save images: %w", err)
	}
	return nil
}

func specsVersioned() specs.Versioned { return specs.Versioned{SchemaVersion: 2} }

func blobPath(d digest.Digest) string {
	return path.Join("blobs", d.Algorithm().String(), d.Encoded())
}

func (s *Store) writeBlob(ctx context.Context, tw *tar.Writer, d digest.Digest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := s.content.Reader(d)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: blobPath(d), Typeflag: tar.TypeReg, Mode: 0o644, Size: fi.Size(), ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// loadImage is one image found in an archive.
type loadImage struct {
	manifest  []byte
	mediaType string
	names     []string
	// blob returns the path of a blob inside the spooled archive.
	blob func(digest.Digest) (string, error)
}

// Load imports every image of an OCI layout or docker-archive tarball and
// tags it with the names inside. The tar is spooled to a temp dir under
// the root first: docker archives put manifest.json anywhere in the tar.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]*Image, error) {
	if err := os.MkdirAll(s.tmpDir(), 0o700); err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	dir, err := os.MkdirTemp(s.tmpDir(), "load-")
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := spool(ctx, r, dir); err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	found, err := readArchive(dir)
	if err != nil {
		return nil, fmt.Errorf("load images: %w", err)
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	var out []*Image
	for _, li := range found {
		img, err := s.importImage(ctx, li)
		if err != nil {
			return out, fmt.Errorf("load images: %w", err)
		}
		out = append(out, img)
	}
	return out, nil
}

// spool extracts the archive's regular files, directories and symlinks
// into dir. Paths leaving dir are refused; symlinks are only ever followed
// through securejoin, scoped to dir.
func spool(ctx context.Context, r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		name := filepath.Clean(strings.TrimPrefix(h.Name, "./"))
		if name == "." {
			continue
		}
		if !filepath.IsLocal(name) {
			return fmt.Errorf("read archive: %w: path %q leaves the archive", errdefs.ErrInvalidArgument, h.Name)
		}
		p, err := securejoin.SecureJoin(dir, name)
		if err != nil {
			return fmt.Errorf("read archive: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, 0o700)
		case tar.TypeReg:
			err = writeFile(p, tr)
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
				err = os.Symlink(h.Linkname, p)
			}
		}
		if err != nil {
			return fmt.Errorf("read archive: %s: %w", h.Name, err)
		}
	}
}

func writeFile(p string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readInside(dir, name string) ([]byte, error) {
	p, err := securejoin.SecureJoin(dir, name)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w: %w", name, errdefs.ErrNotFound, err)
	}
	return b, err
}

// readArchive finds the images of a spooled archive: by index.json (OCI
// layout, also written by docker 25+) or else by manifest.json (docker
// save). RepoTags of a manifest.json name the OCI images too.
func readArchive(dir string) ([]loadImage, error) {
	var dockerEntries []dockerManifestEntry
	if b, err := readInside(dir, "manifest.json"); err == nil {
		if err := json.Unmarshal(b, &dockerEntries); err != nil {
			return nil, fmt.Errorf("decode manifest.json: %w: %w", errdefs.ErrInvalidArgument, err)
		}
	} else if !errdefs.IsNotFound(err) {
		return nil, err
	}
	b, err := readInside(dir, ocispec.ImageIndexFile)
	if errdefs.IsNotFound(err) {
		if dockerEntries == nil {
			return nil, fmt.Errorf("%w: neither index.json nor manifest.json in the archive", errdefs.ErrInvalidArgument)
		}
		return dockerImages(dir, dockerEntries)
	}
	if err != nil {
		return nil, err
	}
	var index ocispec.Index
	if err := json.Unmarshal(b, &index); err != nil {
		return nil, fmt.Errorf("decode index.json: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	blob := func(d digest.Digest) (string, error) {
		if err := d.Validate(); err != nil {
			return "", fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
		}
		return securejoin.SecureJoin(dir, blobPath(d))
	}
	byManifest := map[digest.Digest]int{}
	var out []loadImage
	for _, desc := range index.Manifests {
		names := namesOf(desc)
		if desc.MediaType == ocispec.MediaTypeImageIndex || desc.MediaType == mediaTypeDockerList {
			d, err := pickPlatform(blob, desc)
			if err != nil {
				return nil, err
			}
			desc = d
		}
		if i, ok := byManifest[desc.Digest]; ok {
			out[i].names = append(out[i].names, names...)
			continue
		}
		p, err := blob(desc.Digest)
		if err != nil {
			return nil, err
		}
		m, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("manifest %s: %w: %w", desc.Digest, errdefs.ErrInvalidArgument, err)
		}
		byManifest[desc.Digest] = len(out)
		out = append(out, loadImage{manifest: m, mediaType: desc.MediaType, names: names, blob: blob})
	}
	// docker 25+ names images in manifest.json; match them by config.
	for _, e := range dockerEntries {
		for i := range out {
			var m ocispec.Manifest
			if json.Unmarshal(out[i].manifest, &m) == nil && blobPath(m.Config.Digest) == path.Clean(e.Config) {
				out[i].names = append(out[i].names, e.RepoTags...)
			}
		}
	}
	return out, nil
}

func namesOf(desc ocispec.Descriptor) []string {
	if n := desc.Annotations[annotationImageName]; n != "" {
		return []string{n}
	}
	// A bare ref.name is only a tag ("latest") in most layouts; take it as
	// a name only when it carries a repository.
	if n := desc.Annotations[annotationRefName]; strings.ContainsAny(n, ":/") {
		return []string{n}
	}
	return nil
}

func pickPlatform(blob func(digest.Digest) (string, error), desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	p, err := blob(desc.Digest)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: %w: %w", desc.Digest, errdefs.ErrInvalidArgument, err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("index %s: %w: %w", desc.Digest, errdefs.ErrInvalidArgument, err)
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == goruntime.GOARCH {
			return m, nil
		}
	}
	return ocispec.Descriptor{}, fmt.Errorf("index %s: %w: no manifest for linux/%s", desc.Digest, errdefs.ErrNotFound, goruntime.GOARCH)
}

// dockerImages builds a schema2 manifest for each entry of a docker-save
// manifest.json, whose layers are files of the archive (often plain tars).
func dockerImages(dir string, entries []dockerManifestEntry) ([]loadImage, error) {
	var out []loadImage
	for _, e := range entries {
		paths := map[digest.Digest]string{}
		cfgPath, err := securejoin.SecureJoin(dir, e.Config)
		if err != nil {
			return nil, err
		}
		cd, cs, _, err := hashFile(cfgPath)
		if err != nil {
			return nil, fmt.Errorf("config %s: %w", e.Config, err)
		}
		paths[cd] = cfgPath
		m := ocispec.Manifest{Versioned: specsVersioned(), MediaType: mediaTypeDockerManifest,
			Config: ocispec.Descriptor{MediaType: mediaTypeDockerConfig, Digest: cd, Size: cs}}
		for _, l := range e.Layers {
			lp, err := securejoin.SecureJoin(dir, l)
			if err != nil {
				return nil, err
			}
			ld, ls, head, err := hashFile(lp)
			if err != nil {
				return nil, fmt.Errorf("layer %s: %w", l, err)
			}
			mt := mediaTypeDockerLayer
			switch {
			case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
				mt = mediaTypeDockerLayerGz
			case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
				mt = ocispec.MediaTypeImageLayerZstd
			}
			paths[ld] = lp
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: ld, Size: ls})
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return nil, err
		}
		out = append(out, loadImage{manifest: mb, mediaType: mediaTypeDockerManifest, names: e.RepoTags, blob: func(d digest.Digest) (string, error) {
			if p, ok := paths[d]; ok {
				return p, nil
			}
			return "", fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}})
	}
	return out, nil
}

func hashFile(p string) (digest.Digest, int64, []byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", 0, nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	defer f.Close()
	head := make([]byte, 4)
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, nil, err
	}
	dg := digest.SHA256.Digester()
	size, err := io.Copy(dg.Hash(), f)
	if err != nil {
		return "", 0, nil, err
	}
	return dg.Digest(), size, head[:n], nil
}

// importImage stores the blobs of one archive image, unpacks its layers
// and records it; the record is written last.
func (s *Store) importImage(ctx context.Context, li loadImage) (*Image, error) {
	var m ocispec.Manifest
	if err := json.Unmarshal(li.manifest, &m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	var tags []string
	for _, n := range li.names {
		t, err := parseTag(n)
		if err != nil {
			return nil, err
		}
		tags = append(tags, t.String())
	}
	cp, err := li.blob(m.Config.Digest)
	if err != nil {
		return nil, err
	}
	rawConfig, err := os.ReadFile(cp)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w: %w", m.Config.Digest, errdefs.ErrInvalidArgument, err)
	}
	if digest.FromBytes(rawConfig) != m.Config.Digest {
		return nil, fmt.Errorf("config %s: %w: digest mismatch", m.Config.Digest, errdefs.ErrDataLoss)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(rawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("decode config %s: %w: %w", m.Config.Digest, errdefs.ErrInvalidArgument, err)
	}
	diffIDs := cfg.RootFS.DiffIDs
	if len(diffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: %w: %d layers but %d diff IDs", m.Config.Digest, errdefs.ErrInvalidArgument, len(m.Layers), len(diffIDs))
	}
	chainIDs := identity.ChainIDs(slices.Clone(diffIDs))
	rec := meta.Image{ID: m.Config.Digest, ManifestDigest: digest.FromBytes(li.manifest), ManifestMediaType: li.mediaType,
		Config: rawConfig, Pulled: time.Now().UTC(), Size: int64(len(rawConfig) + len(li.manifest))}
	if rec.ManifestMediaType == "" {
		rec.ManifestMediaType = m.MediaType
	}
	for i, l := range m.Layers {
		ml := meta.Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, DiffID: diffIDs[i], ChainID: chainIDs[i]}
		size, err := s.importLayer(ctx, li, ml)
		if err != nil {
			return nil, fmt.Errorf("layer %s: %w", l.Digest, err)
		}
		ml.UnpackedSize = size
		rec.Size += l.Size
		rec.Layers = append(rec.Layers, ml)
	}
	if err := s.content.Put(rec.ID, int64(len(rawConfig)), bytes.NewReader(rawConfig)); err != nil {
		return nil, err
	}
	if err := s.content.Put(rec.ManifestDigest, int64(len(li.manifest)), bytes.NewReader(li.manifest)); err != nil {
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

func (s *Store) importLayer(ctx context.Context, li loadImage, l meta.Layer) (int64, error) {
	if _, err := s.content.Info(l.Digest); errdefs.IsNotFound(err) {
		p, err := li.blob(l.Digest)
		if err != nil {
			return 0, err
		}
		f, err := os.Open(p)
		if err != nil {
			return 0, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
		}
		err = s.content.Put(l.Digest, l.Size, f)
		f.Close()
		if err != nil {
			return 0, err
		}
	} else if err != nil {
		return 0, err
	}
	if info, err := s.layers.Info(l.ChainID); err == nil {
		return info.Size, nil
	}
	f, err := s.content.Reader(l.Digest)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := s.layers.Unpack(ctx, l.ChainID, l.DiffID, f)
	if err != nil {
		return 0, err
	}
	return info.Size, nil
}
