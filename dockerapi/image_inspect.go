package dockerapi

import (
	"encoding/json"
	"net/http"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/image"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore"
)

// imageGetSuffix serves GET /images/{name}/json and GET /images/{name}/get.
func (s *server) imageGetSuffix(w http.ResponseWriter, r *http.Request) error {
	name, action := splitNameAction(r.PathValue("rest"), "json", "get", "history")
	switch action {
	case "json":
		return s.imageInspect(w, r, name)
	case "history":
		return s.imageHistory(w, r, name)
	case "get":
		return s.imageSave(w, r, []string{name})
	}
	if name == "search" {
		return notImplemented(w, r)
	}
	return pageNotFound(w, r)
}

// imagePostSuffix serves POST /images/{name}/tag and /push.
func (s *server) imagePostSuffix(w http.ResponseWriter, r *http.Request) error {
	name, action := splitNameAction(r.PathValue("rest"), "tag", "push")
	switch action {
	case "tag":
		return s.imageTag(w, r, name)
	case "push":
		return s.imagePush(w, r, name)
	}
	if name == "prune" {
		return s.imagePrune(w, r)
	}
	return pageNotFound(w, r)
}

func (s *server) imageInspect(w http.ResponseWriter, r *http.Request, name string) error {
	img, err := s.images.Get(r.Context(), name)
	if err != nil {
		return noSuchImage(name, err)
	}
	writeJSON(w, http.StatusOK, inspect(img))
	return nil
}

func inspect(img *imagestore.Image) image.InspectResponse {
	c := img.Config
	layers := make([]string, 0, len(c.RootFS.DiffIDs))
	for _, d := range c.RootFS.DiffIDs {
		layers = append(layers, d.String())
	}
	var created string
	if c.Created != nil {
		created = c.Created.UTC().Format(time.RFC3339Nano)
	}
	var desc *ocispec.Descriptor
	if img.ManifestDigest != "" {
		desc = &ocispec.Descriptor{MediaType: img.ManifestMediaType, Digest: img.ManifestDigest}
	}
	// Docker's config fields (Healthcheck, OnBuild, Shell) are in the
	// stored config, not in ocispec's.
	cfg := &dockerspec.DockerOCIImageConfig{ImageConfig: c.Config}
	var full dockerspec.DockerOCIImage
	if len(img.RawConfig) > 0 && json.Unmarshal(img.RawConfig, &full) == nil {
		cfg.Healthcheck, cfg.OnBuild, cfg.Shell = full.Config.Healthcheck, full.Config.OnBuild, full.Config.Shell
	}
	return image.InspectResponse{
		ID:           img.ID.String(),
		RepoTags:     familiarAll(img.RepoTags),
		RepoDigests:  familiarAll(img.RepoDigests),
		Created:      created,
		Author:       c.Author,
		Config:       cfg,
		Architecture: c.Architecture,
		Variant:      c.Variant,
		Os:           c.OS,
		OsVersion:    c.OSVersion,
		Size:         displaySize(img),
		RootFS:       image.RootFS{Type: "layers", Layers: layers},
		Descriptor:   desc,
	}
}
