package dockerapi

import (
	"net/http"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/storage"

	"github.com/berth-dev/berth/engine"
)

// containerInspect is GET /containers/{name}/json.
func (s *server) containerInspect(w http.ResponseWriter, r *http.Request) error {
	c, err := s.engine.Inspect(r.Context(), r.PathValue("name"))
	if err != nil {
		return err
	}
	resp := inspectResponse(c)
	if boolValue(r, "size") {
		rw, rootfs := s.containerSize(r, c)
		resp.SizeRw, resp.SizeRootFs = &rw, &rootfs
	}
	// NetworkSettings as the client's API version shows them.
	var ns any = resp.NetworkSettings
	if c.NetworkSettings != nil {
		ns = networkSettingsJSON(*c.NetworkSettings, c.ID, apiVersion(r), shortIDAlias(r))
	}
	writeJSON(w, http.StatusOK, inspectJSON{InspectResponse: resp, NetworkSettings: ns})
	return nil
}

// inspectJSON is the inspect response with NetworkSettings in the shape
// of the request's API version.
type inspectJSON struct {
	container.InspectResponse
	NetworkSettings any
}

// dockerTime formats a time as dockerd does in inspect (zero included).
func dockerTime(t time.Time) string {
	if t.IsZero() {
		return "0001-01-01T00:00:00Z"
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func inspectResponse(c *engine.Container) container.InspectResponse {
	st := c.State
	hc := *c.HostConfig
	mounts := make([]container.MountPoint, 0, len(c.Mounts))
	var specMounts []mount.Mount
	for _, m := range c.Mounts {
		mp := m.MountPoint
		if mp.Type == mount.TypeBind && mp.Propagation == "" {
			mp.Propagation = mount.PropagationRPrivate
		}
		mounts = append(mounts, mp)
		if m.Spec != nil {
			specMounts = append(specMounts, *m.Spec)
		}
	}
	hc.Mounts = specMounts
	resp := container.InspectResponse{
		ID:      c.ID,
		Created: dockerTime(c.Created),
		Path:    c.Path,
		Args:    nonNilStrings(c.Args),
		State: &container.State{
			Status: st.Status, Running: st.Running, Paused: st.Paused, Restarting: st.Restarting,
			OOMKilled: st.OOMKilled, Dead: st.Dead, Pid: st.Pid, ExitCode: st.ExitCode, Error: st.Error,
			StartedAt: dockerTime(st.StartedAt), FinishedAt: dockerTime(st.FinishedAt),
			Health: st.Health,
		},
		ExecIDs:        c.ExecIDs,
		Image:          c.ImageID,
		ResolvConfPath: c.ResolvConfPath,
		HostnamePath:   c.HostnamePath,
		HostsPath:      c.HostsPath,
		LogPath:        c.LogPath,
		Name:           "/" + c.Name,
		RestartCount:   c.RestartCount,
		Driver:         "overlayfs",
		Platform:       "linux",
		HostConfig:     &hc,
		Mounts:         mounts,
		Config:         c.Config,
		NetworkSettings: &container.NetworkSettings{
			SandboxID: c.ID, SandboxKey: c.SandboxKey,
			Ports: c.Ports, Networks: c.Networks,
		},
	}
	if c.UpperDir != "" {
		resp.GraphDriver = &storage.DriverData{Name: "overlayfs", Data: map[string]string{"UpperDir": c.UpperDir, "MergedDir": c.Bundle + "/rootfs"}}
	}
	return resp
}

func nonNilStrings(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
