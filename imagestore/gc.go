package imagestore

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/imagestore/content"
)

// GC removes blobs and unpacked layers that no image references, no build
// cache record keeps, no running build holds (Lease) and no snapshot uses.
// Pinned images are images like any other here: GC never removes an image,
// only what no image needs.
func (s *Store) GC(ctx context.Context) error {
	_, err := s.gc(ctx)
	return err
}

// gc is GC; it returns the bytes it freed (blob sizes plus unpacked layer
// sizes).
func (s *Store) gc(ctx context.Context) (int64, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	recs, err := s.meta.List()
	if err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	cache, err := s.meta.ListCache()
	if err != nil {
		return 0, fmt.Errorf("gc: %w", err)
	}
	blobs, chains := s.leased()
	for _, r := range recs {
		blobs[r.ID], blobs[r.ManifestDigest] = true, true
		for _, l := range r.Layers {
			blobs[l.Digest], chains[l.ChainID] = true, true
		}
	}
	for _, r := range cache {
		for _, l := range r.Layers {
			blobs[l.Digest], chains[l.ChainID] = true, true
		}
	}
	var freed int64
	snaps, err := s.snaps.List()
	if err != nil {
		return 0, fmt.Errorf("gc: list snapshots: %w", err)
	}
	used := map[string]bool{}
	for _, sn := range snaps {
		for _, l := range sn.Lowers {
			used[l] = true
		}
	}
	var drop []content.Info
	err = s.content.Walk(func(i content.Info) error {
		if !blobs[i.Digest] {
			drop = append(drop, i)
		}
		return nil
	})
	if err != nil {
		return freed, fmt.Errorf("gc: walk blobs: %w", err)
	}
	for _, i := range drop {
		if err := ctx.Err(); err != nil {
			return freed, fmt.Errorf("gc: %w", err)
		}
		if err := s.content.Delete(i.Digest); err != nil {
			return freed, fmt.Errorf("gc: %w", err)
		}
		freed += i.Size
	}
	infos, err := s.layers.List()
	if err != nil {
		return freed, fmt.Errorf("gc: list layers: %w", err)
	}
	for _, li := range infos {
		if chains[li.ChainID] || used[s.layers.Dir(li.ChainID)] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return freed, fmt.Errorf("gc: %w", err)
		}
		if err := s.layers.Remove(li.ChainID); err != nil {
			return freed, fmt.Errorf("gc: %w", err)
		}
		freed += li.Size
	}
	return freed, nil
}
