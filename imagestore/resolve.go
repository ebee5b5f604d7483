package imagestore

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore/meta"
)

// parseRef normalizes a pull/push reference: "busybox" is
// "docker.io/library/busybox:latest"; a digest reference keeps its digest.
func parseRef(ref string) (reference.Named, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("parse reference %q: %w: %w", ref, errdefs.ErrInvalidArgument, err)
	}
	return named, nil
}

// parseTag normalizes a tag name (default tag latest); digests are refused.
func parseTag(name string) (reference.NamedTagged, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, fmt.Errorf("parse tag %q: %w: %w", name, errdefs.ErrInvalidArgument, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return nil, fmt.Errorf("parse tag %q: %w: a tag cannot hold a digest", name, errdefs.ErrInvalidArgument)
	}
	return reference.TagNameOnly(named).(reference.NamedTagged), nil
}

func isHex(s string) bool {
	return s != "" && strings.Trim(s, "0123456789abcdef") == ""
}

// resolve finds the record for a full or short image ID, a digest (config
// or manifest/repo digest), a name (default tag latest) or name@digest.
// As docker does, a name that is also a tag wins over an ID prefix.
func (s *Store) resolve(_ context.Context, nameOrID string) (meta.Record, error) {
	notFound := fmt.Errorf("image %q: %w", nameOrID, errdefs.ErrNotFound)
	if nameOrID == "" {
		return meta.Record{}, fmt.Errorf("image name: %w: empty", errdefs.ErrInvalidArgument)
	}
	if strings.HasPrefix(nameOrID, "sha256:") {
		d, err := digest.Parse(nameOrID)
		if err != nil {
			return meta.Record{}, fmt.Errorf("image %q: %w: %w", nameOrID, errdefs.ErrInvalidArgument, err)
		}
		return s.byDigest(d, notFound)
	}
	if len(nameOrID) == 64 && isHex(nameOrID) {
		return s.byDigest(digest.NewDigestFromEncoded(digest.SHA256, nameOrID), notFound)
	}
	named, perr := reference.ParseDockerRef(nameOrID)
	if perr == nil {
		if c, ok := named.(reference.Canonical); ok {
			return s.byRepoDigest(named.Name()+"@"+c.Digest().String(), c.Digest(), notFound)
		}
		id, err := s.meta.LookupTag(named.String())
		if err == nil {
			return s.meta.Get(id)
		}
		if !errdefs.IsNotFound(err) {
			return meta.Record{}, err
		}
	}
	if len(nameOrID) >= 3 && isHex(nameOrID) {
		return s.byIDPrefix(nameOrID, notFound)
	}
	if perr != nil {
		return meta.Record{}, fmt.Errorf("image %q: %w: %w", nameOrID, errdefs.ErrInvalidArgument, perr)
	}
	return meta.Record{}, notFound
}

func (s *Store) byDigest(d digest.Digest, notFound error) (meta.Record, error) {
	r, err := s.meta.Get(d)
	if err == nil || !errdefs.IsNotFound(err) {
		return r, err
	}
	recs, err := s.meta.List()
	if err != nil {
		return meta.Record{}, err
	}
	for _, r := range recs {
		if r.ManifestDigest == d || slices.ContainsFunc(r.RepoDigests, func(rd string) bool { return strings.HasSuffix(rd, "@"+d.String()) }) {
			return r, nil
		}
	}
	return meta.Record{}, notFound
}

func (s *Store) byRepoDigest(repoDigest string, d digest.Digest, notFound error) (meta.Record, error) {
	recs, err := s.meta.List()
	if err != nil {
		return meta.Record{}, err
	}
	for _, r := range recs {
		if slices.Contains(r.RepoDigests, repoDigest) {
			return r, nil
		}
	}
	// Docker also accepts name@<manifest digest> when the image was stored
	// under another name (pulled by tag from a mirror, loaded, ...).
	name, _, _ := strings.Cut(repoDigest, "@")
	for _, r := range recs {
		if r.ManifestDigest == d && slices.ContainsFunc(r.Tags, func(t string) bool { return strings.HasPrefix(t, name+":") }) {
			return r, nil
		}
	}
	return meta.Record{}, notFound
}

func (s *Store) byIDPrefix(prefix string, notFound error) (meta.Record, error) {
	recs, err := s.meta.List()
	if err != nil {
		return meta.Record{}, err
	}
	var found []meta.Record
	for _, r := range recs {
		if strings.HasPrefix(r.ID.Encoded(), prefix) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return meta.Record{}, notFound
	case 1:
		return found[0], nil
	default:
		return meta.Record{}, fmt.Errorf("image %q: %w: ambiguous short ID matches %d images", prefix, errdefs.ErrInvalidArgument, len(found))
	}
}

// Get resolves a full or short (>= 3 hex chars, unique) image ID, a digest
// "sha256:...", a name (normalized; default tag latest) or a name@digest.
// Unknown names give an error wrapping errdefs.ErrNotFound.
func (s *Store) Get(ctx context.Context, nameOrID string) (*Image, error) {
	r, err := s.resolve(ctx, nameOrID)
	if err != nil {
		return nil, err
	}
	return toImage(r)
}

// List returns every image.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	recs, err := s.meta.List()
	if err != nil {
		return nil, err
	}
	out := make([]*Image, 0, len(recs))
	for _, r := range recs {
		img, err := toImage(r)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// Tag makes target (a name, default tag latest) point at the image source
// names. A tag that pointed elsewhere moves.
func (s *Store) Tag(ctx context.Context, source, target string) error {
	t, err := parseTag(target)
	if err != nil {
		return err
	}
	r, err := s.resolve(ctx, source)
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", source, target, err)
	}
	if err := s.meta.Tag(t.String(), r.ID); err != nil {
		return fmt.Errorf("tag %s as %s: %w", source, target, err)
	}
	return nil
}
