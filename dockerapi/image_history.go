package dockerapi

import (
	"net/http"
	"slices"

	"github.com/moby/moby/api/types/image"
)

// imageHistory is GET /images/{name}/history: the config's history, newest
// first, each step that made a layer paired with that layer's unpacked size,
// as dockerd reports it. Berth keeps no parent images, so every step but the
// newest has the ID "<missing>", as with dockerd's containerd image store.
func (s *server) imageHistory(w http.ResponseWriter, r *http.Request, name string) error {
	img, err := s.images.Get(r.Context(), name)
	if err != nil {
		return err
	}
	var out []image.HistoryResponseItem
	layer := 0
	nextLayerSize := func() int64 {
		if layer >= len(img.Layers) {
			return 0
		}
		layer++
		return img.Layers[layer-1].UnpackedSize
	}
	for _, h := range img.Config.History {
		item := image.HistoryResponseItem{ID: "<missing>", CreatedBy: h.CreatedBy, Comment: h.Comment, Tags: []string{}}
		if h.Created != nil {
			item.Created = h.Created.Unix()
		}
		if !h.EmptyLayer {
			item.Size = nextLayerSize()
		}
		out = append(out, item)
	}
	// A config without history (images assembled by tools, not builds):
	// one step per layer, dated as the image.
	for layer < len(img.Layers) {
		item := image.HistoryResponseItem{ID: "<missing>", Tags: []string{}, Size: nextLayerSize()}
		if img.Config.Created != nil {
			item.Created = img.Config.Created.Unix()
		}
		out = append(out, item)
	}
	slices.Reverse(out)
	if len(out) == 0 {
		out = []image.HistoryResponseItem{{Tags: []string{}}}
	}
	out[0].ID = img.ID.String()
	out[0].Tags = familiarAll(img.RepoTags)
	writeJSON(w, http.StatusOK, out)
	return nil
}
