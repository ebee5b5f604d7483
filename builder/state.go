package builder

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/imagestore"
)

// defaultPath is the PATH an image without one gets, as BuildKit sets it.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// historyComment marks history entries as BuildKit's frontend does, so
// that tools that look for it find the same marker.
const historyComment = "buildkit.dockerfile.v0"

// state is a stage's state between two steps: the filesystem (layers, base
// first), the image config with its history, the environment variable
// expansion and RUN see (config env plus ARG values in scope), and the
// cache key that identifies it.
type state struct {
	layers []imagestore.Layer
	img    dockerspec.DockerOCIImage
	key    digest.Digest
	env    envList
	// args are the ARGs declared in the stage (and its base stages), in
	// order, with their values: RUN's history lists them.
	args []instructions.KeyValuePairOptional
	// cmdSet: CMD was set in this Dockerfile (ENTRYPOINT then keeps it).
	cmdSet bool
	// workdirOK: the working dir is known to exist.
	workdirOK bool
	// arch is the stage's architecture (RUN can only run the host's).
	arch string
}

func (s *state) clone() *state {
	c := *s
	c.layers = slices.Clone(s.layers)
	c.img = cloneImage(s.img)
	c.env = slices.Clone(s.env)
	c.args = slices.Clone(s.args)
	return &c
}

func cloneImage(src dockerspec.DockerOCIImage) dockerspec.DockerOCIImage {
	img := src
	img.Config.Env = slices.Clone(src.Config.Env)
	img.Config.Cmd = slices.Clone(src.Config.Cmd)
	img.Config.Entrypoint = slices.Clone(src.Config.Entrypoint)
	img.Config.OnBuild = slices.Clone(src.Config.OnBuild)
	img.Config.ExposedPorts = maps.Clone(src.Config.ExposedPorts)
	img.Config.Volumes = maps.Clone(src.Config.Volumes)
	img.Config.Labels = maps.Clone(src.Config.Labels)
	img.Config.Shell = slices.Clone(src.Config.Shell)
	if src.Config.Healthcheck != nil {
		hc := *src.Config.Healthcheck
		hc.Test = slices.Clone(src.Config.Healthcheck.Test)
		img.Config.Healthcheck = &hc
	}
	img.History = slices.Clone(src.History)
	img.RootFS.DiffIDs = slices.Clone(src.RootFS.DiffIDs)
	return img
}

// emptyImage is the config of FROM scratch.
func emptyImage(p platform) dockerspec.DockerOCIImage {
	var img dockerspec.DockerOCIImage
	img.OS, img.Architecture, img.Variant = p.OS, p.Arch, p.Variant
	img.RootFS.Type = "layers"
	img.Config.WorkingDir = "/"
	img.Config.Env = []string{"PATH=" + defaultPath}
	return img
}

// imageState is the state of FROM <image>.
func imageState(img *imagestore.Image, key digest.Digest) (*state, error) {
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(img.RawConfig, &cfg); err != nil {
		return nil, fmt.Errorf("image %s: decode config: %w: %w", img.ID, errdefs.ErrDataLoss, err)
	}
	cfg.Created = nil
	cfg.RootFS.Type = "layers"
	if _, ok := envList(cfg.Config.Env).Get("PATH"); !ok {
		cfg.Config.Env = append(cfg.Config.Env, "PATH="+defaultPath)
	}
	return &state{layers: slices.Clone(img.Layers), img: cfg, key: key, env: slices.Clone(envList(cfg.Config.Env))}, nil
}

// addHistory appends a history entry, as BuildKit writes them.
func (s *state) addHistory(createdBy string, layer bool, at time.Time) {
	t := at.UTC()
	s.img.History = append(s.img.History, ocispec.History{
		Created:    &t,
		CreatedBy:  createdBy,
		Comment:    historyComment,
		EmptyLayer: !layer,
	})
}

// config returns the state's image config as an image of it would have
// it: diff IDs of its layers, created at its last history entry.
func (s *state) config() dockerspec.DockerOCIImage {
	img := cloneImage(s.img)
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = make([]digest.Digest, 0, len(s.layers))
	for _, l := range s.layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.DiffID)
	}
	img.Created = nil
	for i := len(img.History) - 1; i >= 0; i-- {
		if img.History[i].Created != nil {
			t := *img.History[i].Created
			img.Created = &t
			break
		}
	}
	return img
}

// encode returns the state's config as it is stored and its digest (what
// the image ID of this state would be).
func (s *state) encode() ([]byte, digest.Digest, error) {
	b, err := json.Marshal(s.config())
	if err != nil {
		return nil, "", fmt.Errorf("encode image config: %w", err)
	}
	return b, digest.FromBytes(b), nil
}

// restore replaces the state's layers and config by a cache entry's; env
// and args stay (the entry came from the same instructions).
func (s *state) restore(e *imagestore.CacheEntry) error {
	var img dockerspec.DockerOCIImage
	if err := json.Unmarshal(e.Config, &img); err != nil {
		return fmt.Errorf("decode cache entry %s: %w: %w", e.Key, errdefs.ErrDataLoss, err)
	}
	s.img = img
	s.layers = slices.Clone(e.Layers)
	s.key = e.Key
	return nil
}

// setEnv sets an ENV in the config and the environment.
func (s *state) setEnv(k, v string) {
	s.env = s.env.set(k, v)
	for i, kv := range s.img.Config.Env {
		if ek, _, _ := strings.Cut(kv, "="); ek == k {
			s.img.Config.Env[i] = k + "=" + v
			return
		}
	}
	s.img.Config.Env = append(s.img.Config.Env, k+"="+v)
}

// withShell prefixes a shell-form command line with the state's SHELL.
func (s *state) withShell(args []string) []string {
	sh := slices.Clone(s.img.Config.Shell)
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(sh, strings.Join(args, " "))
}
