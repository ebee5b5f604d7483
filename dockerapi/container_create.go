package dockerapi

import (
	"errors"
	"net/http"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine"
)

// createBody is POST /containers/create's body: Docker's Config with the
// HostConfig and NetworkingConfig beside it, plus the fields older API
// versions send that the current types dropped (accepted and ignored:
// unknown fields are refused).
type createBody struct {
	container.Config
	HostConfig       *hostConfigBody           `json:",omitempty"`
	NetworkingConfig *network.NetworkingConfig `json:",omitempty"`
	// MacAddress moved to the endpoint settings in API 1.44 and left the
	// config in 1.52.
	MacAddress string `json:",omitempty"`
}

// hostConfigBody is HostConfig with the fields older clients still send.
type hostConfigBody struct {
	container.HostConfig
	// KernelMemory went in API 1.42, KernelMemoryTCP in 1.52; the
	// kernel ignores them on cgroup v2 anyway.
	KernelMemory    int64 `json:",omitempty"`
	KernelMemoryTCP int64 `json:",omitempty"`
	// CpuCount, CpuPercent and the IO limits are Windows-only.
}

func (s *server) containerCreate(w http.ResponseWriter, r *http.Request) error {
	var body createBody
	if err := decodeStrict(r, &body); err != nil {
		if errors.Is(err, errEmptyBody) {
			return invalid("config cannot be empty in order to create a container")
		}
		return err
	}
	opts := engine.CreateOptions{Name: r.URL.Query().Get("name"), Config: &body.Config, NetworkingConfig: body.NetworkingConfig,
		DefaultReadOnlyNonRecursive: versionBelow(r, "1.44")}
	if body.HostConfig != nil {
		opts.HostConfig = &body.HostConfig.HostConfig
		if versionBelow(r, "1.48") {
			for _, m := range body.HostConfig.Mounts {
				if m.Type == mount.TypeImage {
					return invalid(`Mount type "Image" needs API v1.48 or newer`)
				}
			}
		}
	}
	res, err := s.engine.Create(r.Context(), opts)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, container.CreateResponse{ID: res.ID, Warnings: res.Warnings})
	return nil
}
