// Package dockerapitest provides an in-memory image store for tests of the
// Docker API handler and of its clients (cmd/berth). It normalizes names the
// way imagestore does, so familiar-name handling is exercised for real.
package dockerapitest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore"
)

// Store is an in-memory image store. Set its exported fields before use;
// read them after the calls under test returned.
type Store struct {
	mu     sync.Mutex
	images map[digest.Digest]*imagestore.Image
	// Remote is what the pretend registry serves, by normalized reference.
	Remote map[string]*imagestore.Image
	// PullErr fails Pull before any progress; MidErr after the first layer's.
	PullErr, MidErr error
	// Pushed records the references pushed.
	Pushed []string
	// LastAuth is the Auth of the latest Pull or Push.
	LastAuth *imagestore.Auth
	// Logins maps user to the password Login accepts.
	Logins map[string]string
}

// New returns an empty Store.
func New() *Store {
	return &Store{images: map[digest.Digest]*imagestore.Image{}, Remote: map[string]*imagestore.Image{}, Logins: map[string]string{}}
}

func norm(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w: %w", ref, errdefs.ErrInvalidArgument, err)
	}
	return reference.TagNameOnly(n).String(), nil
}

// Image makes a one-layer image whose digests derive from seed, tagged with
// tags (normalized).
func Image(seed string, tags ...string) *imagestore.Image {
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	id := digest.FromString("config " + seed)
	img := &imagestore.Image{
		ID:                id,
		ManifestDigest:    digest.FromString("manifest " + seed),
		ManifestMediaType: ocispec.MediaTypeImageManifest,
		Size:              1000,
		UnpackedSize:      2_200_000,
		Layers: []imagestore.Layer{{
			Digest: digest.FromString("layer " + seed), Size: 900, DiffID: digest.FromString("diff " + seed), UnpackedSize: 2_200_000,
		}},
		Config: ocispec.Image{
			Created:  &created,
			Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
			Config: ocispec.ImageConfig{
				Cmd:    []string{"sh"},
				Labels: map[string]string{"seed": seed},
			},
			RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("diff " + seed)}},
		},
	}
	for _, t := range tags {
		n, _ := norm(t)
		img.RepoTags = append(img.RepoTags, n)
	}
	return img
}

// Add stores img as a local image.
func (f *Store) Add(img *imagestore.Image) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.images[img.ID] = img
}

func (f *Store) Pull(ctx context.Context, ref string, opts imagestore.PullOptions) (*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.LastAuth = opts.Auth
	if f.PullErr != nil {
		return nil, f.PullErr
	}
	r, ok := f.Remote[ref]
	if !ok {
		return nil, fmt.Errorf("pull %s: %w", ref, errdefs.ErrNotFound)
	}
	// Whole-image lines as imagestore sends them, with the tag as ID.
	tag := ref[strings.LastIndex(ref, ":")+1:]
	opts.Progress(imagestore.Progress{ID: tag, Status: "Pulling from " + ref})
	for _, l := range r.Layers {
		id := l.Digest.Encoded()[:12]
		opts.Progress(imagestore.Progress{ID: id, Status: "Pulling fs layer"})
		opts.Progress(imagestore.Progress{ID: id, Status: "Downloading", Current: l.Size / 2, Total: l.Size})
		if f.MidErr != nil {
			return nil, f.MidErr
		}
		opts.Progress(imagestore.Progress{ID: id, Status: "Pull complete"})
	}
	opts.Progress(imagestore.Progress{ID: tag, Status: "Digest: " + r.ManifestDigest.String()})
	img := *r
	if existing, ok := f.images[img.ID]; ok {
		img = *existing
	}
	if !contains(img.RepoTags, ref) {
		img.RepoTags = append(append([]string{}, img.RepoTags...), ref)
	}
	f.images[img.ID] = &img
	return &img, nil
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (f *Store) Push(ctx context.Context, ref string, opts imagestore.PushOptions) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.LastAuth = opts.Auth
	img, err := f.getLocked(ref)
	if err != nil {
		return err
	}
	tag := ref[strings.LastIndex(ref, ":")+1:]
	opts.Progress(imagestore.Progress{ID: "aaaaaaaaaaaa", Status: "Pushed"})
	opts.Progress(imagestore.Progress{ID: tag, Status: fmt.Sprintf("%s: digest: %s size: 527", tag, img.ManifestDigest)})
	f.Pushed = append(f.Pushed, ref)
	return nil
}

func (f *Store) getLocked(nameOrID string) (*imagestore.Image, error) {
	for id, img := range f.images {
		if strings.HasPrefix(id.String(), nameOrID) || strings.HasPrefix(id.Encoded(), nameOrID) {
			return img, nil
		}
	}
	n, err := norm(nameOrID)
	if err != nil {
		return nil, err
	}
	for _, img := range f.images {
		if contains(img.RepoTags, n) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("get image %s: %w", nameOrID, errdefs.ErrNotFound)
}

func (f *Store) Get(ctx context.Context, nameOrID string) (*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.getLocked(nameOrID)
}

func (f *Store) List(ctx context.Context) ([]*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*imagestore.Image
	for _, img := range f.images {
		out = append(out, img)
	}
	return out, nil
}

func (f *Store) Tag(ctx context.Context, source, target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.getLocked(source)
	if err != nil {
		return err
	}
	// A tag that pointed elsewhere moves, as in imagestore.
	for _, other := range f.images {
		other.RepoTags = slices.DeleteFunc(other.RepoTags, func(t string) bool { return t == target })
	}
	img.RepoTags = append(img.RepoTags, target)
	return nil
}

func (f *Store) Remove(ctx context.Context, nameOrID string, opts imagestore.RemoveOptions) (imagestore.Removed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, err := f.getLocked(nameOrID)
	if err != nil {
		return imagestore.Removed{}, err
	}
	if n, err := norm(nameOrID); err == nil && contains(img.RepoTags, n) {
		var rest []string
		for _, t := range img.RepoTags {
			if t != n {
				rest = append(rest, t)
			}
		}
		img.RepoTags = rest
		out := imagestore.Removed{Untagged: []string{n}}
		if len(rest) == 0 {
			delete(f.images, img.ID)
			out.Deleted = []digest.Digest{img.ID}
		}
		return out, nil
	}
	if len(img.RepoTags) > 1 && !opts.Force {
		return imagestore.Removed{}, fmt.Errorf("remove %s: image is referenced in multiple repositories: %w", nameOrID, errdefs.ErrConflict)
	}
	delete(f.images, img.ID)
	return imagestore.Removed{Untagged: img.RepoTags, Deleted: []digest.Digest{img.ID}}, nil
}

func (f *Store) Save(ctx context.Context, w io.Writer, refs []string, format imagestore.ArchiveFormat) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range refs {
		if _, err := f.getLocked(r); err != nil {
			return err
		}
	}
	_, err := io.WriteString(w, "TAR:"+strings.Join(refs, ","))
	return err
}

func (f *Store) Load(ctx context.Context, r io.Reader) ([]*imagestore.Image, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	name, ok := strings.CutPrefix(string(b), "TAR:")
	if !ok {
		return nil, fmt.Errorf("load: %w: not a tarball", errdefs.ErrInvalidArgument)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// A tarball Save wrote holds the same image: loading it changes nothing.
	if img, err := f.getLocked(name); err == nil {
		return []*imagestore.Image{img}, nil
	}
	img := Image("loaded "+name, name)
	f.images[img.ID] = img
	return []*imagestore.Image{img}, nil
}

// Login accepts the credentials in Logins.
func (f *Store) Login(ctx context.Context, server string, auth imagestore.Auth) error {
	if f.Logins[auth.Username] != auth.Password || auth.Username == "" {
		return fmt.Errorf("login %s: %w: bad credentials", server, errdefs.ErrUnauthenticated)
	}
	return nil
}
