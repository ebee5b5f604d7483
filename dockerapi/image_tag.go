package dockerapi

import (
	"net/http"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"
)

// imageTag is POST /images/{name}/tag?repo=&tag=.
func (s *server) imageTag(w http.ResponseWriter, r *http.Request, name string) error {
	q := r.URL.Query()
	repo, tag := q.Get("repo"), q.Get("tag")
	if repo == "" {
		return invalid("tag %s: repo is required", name)
	}
	named, err := reference.ParseNormalizedNamed(repo)
	if err != nil {
		return invalid("tag %s: invalid reference format %q: %v", name, repo, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return invalid("tag %s: refusing to create a tag with a digest reference", name)
	}
	if tag != "" {
		if _, ok := named.(reference.Tagged); ok {
			return invalid("tag %s: repo %q already has a tag", name, repo)
		}
		if named, err = reference.WithTag(named, tag); err != nil {
			return invalid("tag %s: invalid tag %q: %v", name, tag, err)
		}
	}
	target := reference.TagNameOnly(named)
	if err := s.images.Tag(r.Context(), name, target.String()); err != nil {
		return noSuchImage(name, err)
	}
	s.imageEvent(events.ActionTag, name, reference.FamiliarString(target))
	w.WriteHeader(http.StatusCreated)
	return nil
}
