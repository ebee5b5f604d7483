package imagestore

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore/meta"
)

// Remove removes a name or an image. Named by tag: the tag goes, and the
// image with it when that was its last tag (CRI's RemoveImage by one tag of
// a multi-tag image therefore keeps the image, as containerd does). Named
// by name@digest: that repo digest goes, and the image with it when no tag
// or repo digest is left. Named by ID or digest: the image goes with all
// its names; tags in more than one repository need opts.Force, else
// errdefs.ErrConflict (docker's rule). Layers and blobs no image uses any
// more are then removed by GC.
func (s *Store) Remove(ctx context.Context, nameOrID string, opts RemoveOptions) (Removed, error) {
	removed, err := s.remove(ctx, nameOrID, opts)
	if err != nil {
		return Removed{}, fmt.Errorf("remove image %s: %w", nameOrID, err)
	}
	if len(removed.Deleted) > 0 {
		if err := s.GC(ctx); err != nil {
			return removed, fmt.Errorf("remove image %s: %w", nameOrID, err)
		}
	}
	return removed, nil
}

func (s *Store) remove(ctx context.Context, nameOrID string, opts RemoveOptions) (Removed, error) {
	r, err := s.resolve(ctx, nameOrID)
	if err != nil {
		return Removed{}, err
	}
	if named, err := reference.ParseDockerRef(nameOrID); err == nil && !isIDLike(nameOrID, r) {
		if c, ok := named.(reference.Canonical); ok {
			rd := named.Name() + "@" + c.Digest().String()
			if slices.Contains(r.RepoDigests, rd) {
				u, err := s.meta.RemoveRepoDigest(r.ID, rd)
				if err != nil {
					return Removed{}, err
				}
				return untagged([]string{rd}, u), nil
			}
		} else if slices.Contains(r.Tags, named.String()) {
			u, err := s.meta.Untag(named.String())
			if err != nil {
				return Removed{}, err
			}
			return untagged([]string{named.String()}, u), nil
		}
	}
	repos := map[string]bool{}
	for _, t := range r.Tags {
		if n, err := reference.ParseNormalizedNamed(t); err == nil {
			repos[n.Name()] = true
		}
	}
	if len(repos) > 1 && !opts.Force {
		return Removed{}, fmt.Errorf("%w: image %s is referenced in multiple repositories (%d tags); use force", errdefs.ErrConflict, r.ID.Encoded()[:12], len(r.Tags))
	}
	tags, err := s.meta.Delete(r.ID)
	if err != nil {
		return Removed{}, err
	}
	return Removed{Untagged: append(slices.Sorted(slices.Values(tags)), r.RepoDigests...), Deleted: []digest.Digest{r.ID}}, nil
}

// isIDLike says whether nameOrID named the image by its ID rather than by
// a tag that happens to look like hex.
func isIDLike(nameOrID string, r meta.Record) bool {
	if len(nameOrID) >= 3 && isHex(nameOrID) {
		if named, err := reference.ParseDockerRef(nameOrID); err == nil && slices.Contains(r.Tags, named.String()) {
			return false
		}
		return true
	}
	return false
}

func untagged(names []string, u meta.Untagged) Removed {
	rm := Removed{Untagged: names}
	if u.Deleted {
		for _, rd := range u.RepoDigests {
			if !slices.Contains(rm.Untagged, rd) {
				rm.Untagged = append(rm.Untagged, rd)
			}
		}
		rm.Deleted = []digest.Digest{u.ID}
	}
	return rm
}
