package dockerapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"
	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore"
)

// imagePrune is POST /images/prune?filters=: the images no container
// uses, only the untagged ones unless dangling=false (docker image prune
// -a), narrowed by until and label/label!. SpaceReclaimed counts the
// unpacked layers no remaining image holds.
func (s *server) imagePrune(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	danglingOnly := true
	var until time.Time
	for k, vs := range f {
		switch k {
		case "dangling":
			for _, v := range vs {
				b, err := strconv.ParseBool(v)
				if err != nil {
					return invalid("invalid filter 'dangling=%s'", v)
				}
				danglingOnly = b
			}
		case "until":
			for _, v := range vs {
				if until, err = untilTime(v); err != nil {
					return invalid("invalid filter 'until=%s'", v)
				}
			}
		case "label", "label!":
		default:
			return invalid("invalid filter '%s'", k)
		}
	}
	ctx := r.Context()
	imgs, err := s.images.List(ctx)
	if err != nil {
		return err
	}
	used := map[string]bool{}
	if s.engine != nil {
		for _, c := range s.engine.List(ctx) {
			used[c.ImageID] = true
		}
	}
	holders := map[digest.Digest]int{}
	for _, img := range imgs {
		for _, l := range img.Layers {
			holders[l.ChainID]++
		}
	}
	report := image.PruneReport{ImagesDeleted: []image.DeleteResponse{}}
	for _, img := range imgs {
		if used[img.ID.String()] || (danglingOnly && len(img.RepoTags) > 0) || !imageMatchesPrune(img, f, until) {
			continue
		}
		removed, err := s.images.Remove(ctx, img.ID.String(), imagestore.RemoveOptions{Force: true})
		if err != nil {
			// In use by now, or gone: dockerd skips it too.
			noteError(r, err)
			continue
		}
		for _, u := range removed.Untagged {
			report.ImagesDeleted = append(report.ImagesDeleted, image.DeleteResponse{Untagged: familiar(u)})
		}
		for _, d := range removed.Deleted {
			report.ImagesDeleted = append(report.ImagesDeleted, image.DeleteResponse{Deleted: d.String()})
		}
		if len(removed.Deleted) > 0 {
			for _, l := range img.Layers {
				if holders[l.ChainID]--; holders[l.ChainID] == 0 {
					report.SpaceReclaimed += uint64(l.UnpackedSize)
				}
			}
		}
	}
	if s.events != nil {
		s.events.Log(events.ImageEventType, events.ActionPrune, "", map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)})
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}

// imageMatchesPrune applies until and label/label! to an image.
func imageMatchesPrune(img *imagestore.Image, f map[string][]string, until time.Time) bool {
	if !until.IsZero() && (img.Config.Created == nil || !img.Config.Created.Before(until)) {
		return false
	}
	labels := img.Config.Config.Labels
	has := func(l string) bool {
		k, v, withValue := strings.Cut(l, "=")
		got, ok := labels[k]
		return ok && (!withValue || got == v)
	}
	for _, l := range f["label"] {
		if !has(l) {
			return false
		}
	}
	for _, l := range f["label!"] {
		if has(l) {
			return false
		}
	}
	return true
}
