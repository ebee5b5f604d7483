package dockerapi

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore"
)

// imageList is GET /images/json. Berth has no intermediate images, so "all"
// changes nothing, and repo digests are always listed ("digests").
func (s *server) imageList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	for k := range f {
		switch k {
		case "reference", "dangling", "label":
		default:
			return invalid("invalid filter '%s'", k)
		}
	}
	manifests, err := boolParam(r, "manifests")
	if err != nil {
		return err
	}
	imgs, err := s.images.List(r.Context())
	if err != nil {
		return err
	}
	out := []image.Summary{}
	for _, img := range imgs {
		ok, err := matchImage(img, f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		sum := summary(img)
		if manifests {
			sum.Manifests = manifestSummaries(img)
		}
		if pats := f["reference"]; len(pats) > 0 {
			// As dockerd: a reference filter also narrows the names shown.
			if sum.RepoTags, err = matchingRefs(sum.RepoTags, pats); err != nil {
				return err
			}
			if sum.RepoDigests, err = matchingRefs(sum.RepoDigests, pats); err != nil {
				return err
			}
		}
		out = append(out, sum)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created > out[j].Created })
	writeJSON(w, http.StatusOK, out)
	return nil
}

func summary(img *imagestore.Image) image.Summary {
	var created int64
	if img.Config.Created != nil {
		created = img.Config.Created.Unix()
	}
	return image.Summary{
		ID:          img.ID.String(),
		RepoTags:    familiarAll(img.RepoTags),
		RepoDigests: familiarAll(img.RepoDigests),
		Created:     created,
		Size:        displaySize(img),
		SharedSize:  -1,
		Containers:  -1,
		Labels:      img.Config.Config.Labels,
	}
}

// manifestSummaries is the image's one platform manifest, as API 1.47+
// lists them with manifests=1 (docker 29's `images` shows their content
// size): Berth stores one platform per image.
func manifestSummaries(img *imagestore.Image) []image.ManifestSummary {
	m := image.ManifestSummary{
		ID:         img.ManifestDigest.String(),
		Descriptor: ocispec.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest},
		Available:  true,
		Kind:       image.ManifestKindImage,
		ImageData: &image.ImageProperties{
			Platform:   img.Config.Platform,
			Containers: []string{},
		},
	}
	m.Size.Content = img.Size
	m.Size.Total = img.Size + img.UnpackedSize
	m.ImageData.Size.Unpacked = img.UnpackedSize
	return []image.ManifestSummary{m}
}

// displaySize is what docker shows as an image's size: its unpacked layers
// when known, else what it occupies in the content store.
func displaySize(img *imagestore.Image) int64 {
	if img.UnpackedSize > 0 {
		return img.UnpackedSize
	}
	return img.Size
}

// parseFilters reads docker's filters parameter in both of its encodings:
// {"key":{"value":true}} and the pre-1.22 {"key":["value"]}.
func parseFilters(s string) (map[string][]string, error) {
	out := map[string][]string{}
	if s == "" {
		return out, nil
	}
	var m map[string]map[string]bool
	if err := json.Unmarshal([]byte(s), &m); err == nil {
		for k, vs := range m {
			for v, on := range vs {
				if on {
					out[k] = append(out[k], v)
				}
			}
		}
		return out, nil
	}
	var l map[string][]string
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		return nil, invalid("invalid filters %q: %v", s, err)
	}
	return l, nil
}

func matchImage(img *imagestore.Image, f map[string][]string) (bool, error) {
	if vs, ok := f["dangling"]; ok {
		for _, v := range vs {
			var want bool
			switch strings.ToLower(v) {
			case "true", "1":
				want = true
			case "false", "0":
			default:
				return false, invalid("invalid filter 'dangling=%s'", v)
			}
			if (len(img.RepoTags) == 0) != want {
				return false, nil
			}
		}
	}
	for _, v := range f["label"] {
		key, val, hasVal := strings.Cut(v, "=")
		got, ok := img.Config.Config.Labels[key]
		if !ok || (hasVal && got != val) {
			return false, nil
		}
	}
	if pats := f["reference"]; len(pats) > 0 {
		m, err := matchingRefs(append(append([]string{}, img.RepoTags...), img.RepoDigests...), pats)
		if err != nil || len(m) == 0 {
			return false, err
		}
	}
	return true, nil
}

// matchingRefs keeps the references that match one of the patterns the way
// docker matches them (familiar form, path.Match syntax).
func matchingRefs(refs, patterns []string) ([]string, error) {
	out := []string{}
	for _, r := range refs {
		ref, err := reference.ParseNormalizedNamed(r)
		if err != nil {
			continue
		}
		for _, p := range patterns {
			ok, err := reference.FamiliarMatch(p, ref)
			if err != nil {
				return nil, invalid("invalid reference filter %q: %v", p, err)
			}
			if ok {
				out = append(out, r)
				break
			}
		}
	}
	return out, nil
}
