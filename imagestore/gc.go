package imagestore

import (
	"context"
	"fmt"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore/content"
)

// GC removes blobs and unpacked layers that no image references and that no
// snapshot uses. Pinned images are images like any other here: GC never
// removes an image, only what no image needs.
func (s *Store) GC(ctx context.Context) error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	recs, err := s.meta.List()
	if err != nil {
		return fmt.Errorf("gc: %w", err)
	}
	blobs := map[digest.Digest]bool{}
	chains := map[digest.Digest]bool{}
	for _, r := range recs {
		blobs[r.ID], blobs[r.ManifestDigest] = true, true
		for _, l := range r.Layers {
			blobs[l.Digest], chains[l.ChainID] = true, true
		}
	}
	snaps, err := s.snaps.List()
	if err != nil {
		return fmt.Errorf("gc: list snapshots: %w", err)
	}
	used := map[string]bool{}
	for _, sn := range snaps {
		for _, l := range sn.Lowers {
			used[l] = true
		}
	}
	var drop []digest.Digest
	err = s.content.Walk(func(i content.Info) error {
		if !blobs[i.Digest] {
			drop = append(drop, i.Digest)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("gc: walk blobs: %w", err)
	}
	for _, d := range drop {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if err := s.content.Delete(d); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
	}
	infos, err := s.layers.List()
	if err != nil {
		return fmt.Errorf("gc: list layers: %w", err)
	}
	for _, li := range infos {
		if chains[li.ChainID] || used[s.layers.Dir(li.ChainID)] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
		if err := s.layers.Remove(li.ChainID); err != nil {
			return fmt.Errorf("gc: %w", err)
		}
	}
	return nil
}
