package dockerapi

import (
	"context"
	"net/http"
	"slices"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/system"
	"github.com/moby/moby/api/types/volume"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore"
)

// buildCacheUser reports the build cache's usage; *imagestore.Store has
// it (an Images without it shows no build cache).
type buildCacheUser interface {
	BuildCacheUsage(ctx context.Context) (imagestore.BuildCacheUsage, error)
}

// legacyDiskUsage is GET /system/df's answer before API 1.52 (and,
// beside the *Usage objects, at 1.52).
type legacyDiskUsage struct {
	LayersSize int64               `json:"LayersSize,omitempty"`
	Images     []image.Summary     `json:"Images,omitempty"`
	Containers []container.Summary `json:"Containers,omitempty"`
	Volumes    []volume.Volume     `json:"Volumes,omitempty"`
	BuildCache []build.CacheRecord `json:"BuildCache,omitempty"`
}

// diskUsageResponse carries both shapes; each version gets its part.
type diskUsageResponse struct {
	legacyDiskUsage
	system.DiskUsage
}

// systemDF is GET /system/df?type=...&verbose=: what images, containers,
// volumes and the build cache take, in the shape the API version expects
// (lists below 1.52, summaries with their items under verbose from 1.52,
// both at 1.52).
func (s *server) systemDF(w http.ResponseWriter, r *http.Request) error {
	types := r.URL.Query()["type"]
	for _, t := range types {
		switch system.DiskUsageObject(t) {
		case system.ContainerObject, system.ImageObject, system.VolumeObject, system.BuildCacheObject:
		default:
			return invalid("unknown object type: %s", t)
		}
	}
	want := func(o system.DiskUsageObject) bool { return len(types) == 0 || slices.Contains(types, string(o)) }
	legacy, current := versionBelow(r, "1.53"), !versionBelow(r, "1.52")
	verbose := boolValue(r, "verbose")
	var out diskUsageResponse
	ctx := r.Context()

	// Containers first: images count their users.
	var ctrs []container.Summary
	users := map[string]int64{}
	if s.engine != nil {
		for _, c := range s.engine.List(ctx) {
			users[c.ImageID]++
			if !want(system.ContainerObject) {
				continue
			}
			sum := containerSummary(c)
			sum.SizeRw, sum.SizeRootFs = s.containerSize(r, c)
			ctrs = append(ctrs, sum)
		}
	}
	if want(system.ContainerObject) {
		cu := &container.DiskUsage{TotalCount: int64(len(ctrs))}
		var used int64
		for _, c := range ctrs {
			cu.TotalSize += c.SizeRw
			switch c.State {
			case container.StateRunning, container.StatePaused, container.StateRestarting:
				cu.ActiveCount++
				used += c.SizeRw
			}
		}
		cu.Reclaimable = cu.TotalSize - used
		if verbose {
			cu.Items = ctrs
		}
		out.Containers, out.ContainerUsage = nonNilSummaries(ctrs), cu
	}

	if want(system.ImageObject) {
		imgs, err := s.images.List(ctx)
		if err != nil {
			return err
		}
		// A layer's users, to split each image's size into what it shares.
		chains := map[digest.Digest]int{}
		sizes := map[digest.Digest]int64{}
		for _, img := range imgs {
			for _, l := range img.Layers {
				chains[l.ChainID]++
				sizes[l.ChainID] = l.UnpackedSize
			}
		}
		iu := &image.DiskUsage{TotalCount: int64(len(imgs))}
		for _, sz := range sizes {
			iu.TotalSize += sz
		}
		sums := []image.Summary{}
		for _, img := range imgs {
			sum := summary(img)
			sum.Containers = users[img.ID.String()]
			sum.SharedSize = 0
			for _, l := range img.Layers {
				if chains[l.ChainID] > 1 {
					sum.SharedSize += l.UnpackedSize
				}
			}
			if sum.Containers > 0 {
				iu.ActiveCount++
			} else {
				iu.Reclaimable += sum.Size - sum.SharedSize
			}
			sums = append(sums, sum)
		}
		if verbose {
			iu.Items = sums
		}
		out.LayersSize, out.Images, out.ImageUsage = iu.TotalSize, sums, iu
	}

	if want(system.VolumeObject) && s.volumes != nil {
		vu := &volume.DiskUsage{}
		vols := []volume.Volume{}
		var used int64
		for _, v := range s.volumes.List() {
			vol := s.volumeOf(v)
			size, err := s.volumes.Size(v.Name)
			if err != nil {
				size = -1
			}
			refs := int64(len(s.volumes.Users(v.Name)))
			vol.UsageData = &volume.UsageData{Size: size, RefCount: refs}
			vols = append(vols, vol)
			vu.TotalCount++
			if size > 0 {
				vu.TotalSize += size
			}
			if refs > 0 {
				vu.ActiveCount++
				used += max(size, 0)
			}
		}
		vu.Reclaimable = vu.TotalSize - used
		if verbose {
			vu.Items = vols
		}
		out.Volumes, out.VolumeUsage = vols, vu
	}

	if want(system.BuildCacheObject) {
		bu := &build.DiskUsage{}
		recs := []build.CacheRecord{}
		if bc, ok := s.images.(buildCacheUser); ok {
			u, err := bc.BuildCacheUsage(ctx)
			if err != nil {
				return err
			}
			for _, rec := range u.Records {
				created, used := rec.Created, rec.LastUsed
				recs = append(recs, build.CacheRecord{
					ID: rec.Key.Encoded(), Type: "regular", Description: "build step " + rec.Key.Encoded()[:12],
					Size: rec.Bytes, CreatedAt: created, LastUsedAt: &used,
				})
			}
			bu.TotalCount, bu.TotalSize, bu.Reclaimable = int64(u.Entries), u.Bytes, u.Bytes
		}
		if verbose {
			bu.Items = recs
		}
		out.BuildCache, out.BuildCacheUsage = recs, bu
	}

	var resp any
	switch {
	case legacy && current:
		resp = out
	case legacy:
		resp = out.legacyDiskUsage
	default:
		resp = out.DiskUsage
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func nonNilSummaries(s []container.Summary) []container.Summary {
	if s == nil {
		return []container.Summary{}
	}
	return s
}
