package dockerapi

import (
	"net/http"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
)

// imageLoad is POST /images/load: a docker-archive or OCI layout tarball in
// the body. "quiet" only silences progress, which Berth does not send; the
// "Loaded image" lines are always sent, as dockerd does.
func (s *server) imageLoad(w http.ResponseWriter, r *http.Request) error {
	if _, err := boolParam(r, "quiet"); err != nil {
		return err
	}
	imgs, err := s.images.Load(r.Context(), r.Body)
	if err != nil {
		return err
	}
	out := newStream(w)
	for _, img := range imgs {
		s.imageEvent(events.ActionLoad, img.ID.String(), img.ID.String())
		if len(img.RepoTags) == 0 {
			out.send(jsonstream.Message{Stream: "Loaded image ID: " + img.ID.String() + "\n"})
			continue
		}
		for _, t := range img.RepoTags {
			out.send(jsonstream.Message{Stream: "Loaded image: " + familiar(t) + "\n"})
		}
	}
	if len(imgs) == 0 {
		return invalid("load: the archive holds no image")
	}
	return nil
}
