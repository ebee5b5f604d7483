package dockerapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/jsonstream"

	"github.com/berth-dev/berth/imagestore"
)

// pushResult is the aux message docker sends after each pushed tag.
type pushResult struct {
	Tag    string
	Digest string
	Size   int `json:",omitempty"`
}

// imagePush is POST /images/{name}/push?tag=. Without a tag every local tag
// of the repository is pushed, as dockerd does.
func (s *server) imagePush(w http.ResponseWriter, r *http.Request, name string) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return invalid("push %s: invalid reference format: %v", name, err)
	}
	if _, ok := named.(reference.Digested); ok {
		return invalid("push %s: cannot push a digest reference", name)
	}
	auth, err := registryAuth(r)
	if err != nil {
		return err
	}
	ctx := r.Context()

	var refs []reference.NamedTagged
	switch tag := r.URL.Query().Get("tag"); {
	case tag != "":
		t, err := reference.WithTag(reference.TrimNamed(named), tag)
		if err != nil {
			return invalid("push %s: invalid tag %q: %v", name, tag, err)
		}
		refs = append(refs, t)
	default:
		if t, ok := named.(reference.NamedTagged); ok {
			refs = append(refs, t)
			break
		}
		imgs, err := s.images.List(ctx)
		if err != nil {
			return err
		}
		for _, img := range imgs {
			for _, rt := range img.RepoTags {
				n, err := reference.ParseNormalizedNamed(rt)
				if err != nil || n.Name() != named.Name() {
					continue
				}
				if t, ok := n.(reference.NamedTagged); ok {
					refs = append(refs, t)
				}
			}
		}
	}
	if len(refs) == 0 {
		return errdefs.ErrNotFound.WithMessage("An image does not exist locally with the tag: " + reference.FamiliarName(named))
	}
	// Fail with a status code, before the stream starts, when a tag is unknown.
	imgs := make([]*imagestore.Image, len(refs))
	for i, ref := range refs {
		if imgs[i], err = s.images.Get(ctx, ref.String()); err != nil {
			if errdefs.IsNotFound(err) {
				return errdefs.ErrNotFound.WithMessage("An image does not exist locally with the tag: " + reference.FamiliarString(ref))
			}
			return err
		}
	}

	out := newStream(w)
	out.send(jsonstream.Message{Status: fmt.Sprintf("The push refers to repository [%s]", named.Name())})
	for i, ref := range refs {
		res := pushResult{Tag: ref.Tag(), Digest: imgs[i].ManifestDigest.String()}
		var digestLine string
		err := s.images.Push(ctx, ref.String(), imagestore.PushOptions{Auth: auth, Progress: func(p imagestore.Progress) {
			// The store's "<tag>: digest: <d> size: <n>" line is the
			// result: docker sends it once, last, without an ID.
			if strings.Contains(p.Status, ": digest: ") {
				digestLine = p.Status
				var tag, d string
				if n, _ := fmt.Sscanf(p.Status, "%s digest: %s size: %d", &tag, &d, &res.Size); n >= 2 {
					res.Digest = d
				}
				return
			}
			out.progress(p)
		}})
		if err != nil {
			return out.fail(err)
		}
		if digestLine == "" {
			digestLine = fmt.Sprintf("%s: digest: %s", res.Tag, res.Digest)
		}
		out.send(jsonstream.Message{Status: digestLine})
		aux, _ := json.Marshal(res)
		raw := json.RawMessage(aux)
		out.send(jsonstream.Message{Progress: &jsonstream.Progress{}, Aux: &raw})
	}
	return nil
}
