package dockerapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
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
	out := inspect(img)
	if !versionBelow(r, "1.45") && !composeV1(r) {
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	writeJSON(w, http.StatusOK, legacyImageInspect{InspectResponse: out, ContainerConfig: containerConfig(img)})
	return nil
}

// legacyImageInspect is image inspect with ContainerConfig (the config of
// the container a classic build committed), which dockerd sends below
// API 1.45. docker-compose 1.29 reads it at any version (the one /version
// reports) when it recreates a container, and fails with KeyError
// 'ContainerConfig' without it, as it does against dockerd 26 and later.
type legacyImageInspect struct {
	image.InspectResponse
	ContainerConfig *container.Config
}

// containerConfig is the image config's container_config, or an empty
// one (dockerd 25's for images that have none).
func containerConfig(img *imagestore.Image) *container.Config {
	var raw struct {
		ContainerConfig *container.Config `json:"container_config"`
	}
	if len(img.RawConfig) > 0 && json.Unmarshal(img.RawConfig, &raw) == nil && raw.ContainerConfig != nil {
		return raw.ContainerConfig
	}
	return &container.Config{}
}

// composeV1 tells docker-compose 1.x (Python, docker-py) by its
// User-Agent: "docker-compose/1.29.2 docker-py/7.1.0 Linux/...".
func composeV1(r *http.Request) bool {
	return strings.HasPrefix(r.UserAgent(), "docker-compose/1.")
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
