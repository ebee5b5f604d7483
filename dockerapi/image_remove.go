package dockerapi

import (
	"net/http"
	"strconv"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/image"

	"github.com/berth-dev/berth/imagestore"
)

// imageRemove is DELETE /images/{name}?force=&noprune=.
func (s *server) imageRemove(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("rest")
	force, err := boolParam(r, "force")
	if err != nil {
		return err
	}
	removed, err := s.images.Remove(r.Context(), name, imagestore.RemoveOptions{Force: force})
	if err != nil {
		return noSuchImage(name, err)
	}
	out := []image.DeleteResponse{}
	for _, u := range removed.Untagged {
		out = append(out, image.DeleteResponse{Untagged: familiar(u)})
		s.imageEvent(events.ActionUnTag, familiar(u), familiar(u))
	}
	for _, d := range removed.Deleted {
		out = append(out, image.DeleteResponse{Deleted: d.String()})
		s.imageEvent(events.ActionDelete, d.String(), d.String())
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// boolParam reads a docker boolean query parameter ("1", "true", "0", ...);
// absent means false.
func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid("invalid value for %s: %q", name, v)
	}
	return b, nil
}
