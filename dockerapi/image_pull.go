package dockerapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore"
)

// imageCreate is POST /images/create: a pull (fromImage) or an import
// (fromSrc, not served yet).
func (s *server) imageCreate(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	if q.Get("fromSrc") != "" {
		return errdefs.ErrNotImplemented.WithMessage("image import (fromSrc): not implemented in berth yet")
	}
	from := q.Get("fromImage")
	if from == "" {
		return invalid("pull: fromImage is required")
	}
	named, err := reference.ParseNormalizedNamed(from)
	if err != nil {
		return invalid("pull %s: invalid reference format: %v", from, err)
	}
	ref, err := pullReference(named, q.Get("tag"))
	if err != nil {
		return err
	}
	platform, err := parsePlatform(q.Get("platform"))
	if err != nil {
		return err
	}
	auth, err := registryAuth(r)
	if err != nil {
		return err
	}

	ctx := r.Context()
	var before digest.Digest
	if img, err := s.images.Get(ctx, ref.String()); err == nil {
		before = img.ManifestDigest
	}

	tagOrDigest := "latest"
	switch v := ref.(type) {
	case reference.Digested:
		tagOrDigest = v.Digest().String()
	case reference.Tagged:
		tagOrDigest = v.Tag()
	}
	out := newStream(w)
	// "Pulling from" waits for the first real message so that a registry
	// error before any progress still sets the status code.
	out.preamble = &jsonstream.Message{Status: "Pulling from " + reference.Path(ref), ID: tagOrDigest}
	img, err := s.images.Pull(ctx, ref.String(), imagestore.PullOptions{
		Auth:     auth,
		Platform: platform,
		Progress: func(p imagestore.Progress) {
			// The whole-image lines are this handler's to frame: "Pulling
			// from" is the preamble and "Digest:" comes last, without an ID.
			if strings.HasPrefix(p.Status, "Pulling from ") || strings.HasPrefix(p.Status, "Digest: ") {
				return
			}
			out.progress(p)
		},
	})
	if err != nil {
		return out.fail(pullDenied(ref, err))
	}
	s.imageEvent(events.ActionPull, reference.FamiliarString(ref), reference.FamiliarName(ref))
	out.send(jsonstream.Message{Status: "Digest: " + img.ManifestDigest.String()})
	if before != "" && before == img.ManifestDigest {
		out.send(jsonstream.Message{Status: "Status: Image is up to date for " + reference.FamiliarString(ref)})
	} else {
		out.send(jsonstream.Message{Status: "Status: Downloaded newer image for " + reference.FamiliarString(ref)})
	}
	return nil
}

// pullReference combines fromImage and tag as dockerd does: tag may be a
// tag or a digest, and defaults to latest.
func pullReference(named reference.Named, tag string) (reference.Named, error) {
	if tag == "" {
		return reference.TagNameOnly(named), nil
	}
	if _, ok := named.(reference.Digested); ok {
		return named, nil
	}
	if _, ok := named.(reference.Tagged); ok {
		return named, nil
	}
	if d, err := digest.Parse(tag); err == nil {
		ref, err := reference.WithDigest(named, d)
		if err != nil {
			return nil, invalid("pull %s@%s: %v", named, tag, err)
		}
		return ref, nil
	}
	ref, err := reference.WithTag(named, tag)
	if err != nil {
		return nil, invalid("pull %s:%s: %v", named, tag, err)
	}
	return ref, nil
}

// parsePlatform reads docker's "os[/arch[/variant]]".
func parsePlatform(s string) (*ocispec.Platform, error) {
	if s == "" {
		return nil, nil
	}
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return nil, invalid("invalid platform %q: want os[/arch[/variant]]", s)
	}
	p := &ocispec.Platform{OS: parts[0]}
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p, nil
}

// pullDenied words a refused pull as dockerd does, and as not-found rather
// than unauthorized: on a 401 the docker CLI starts an interactive login
// prompt, which dockerd never triggers for pulls either.
func pullDenied(ref reference.Named, err error) error {
	if !errdefs.IsUnauthorized(err) && !errdefs.IsPermissionDenied(err) {
		return err
	}
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf(
		"pull access denied for %s, repository does not exist or may require 'docker login': %v",
		reference.FamiliarName(ref), err))
}
