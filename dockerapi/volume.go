package dockerapi

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/volume"

	bvolume "github.com/berth-dev/berth/engine/volume"
)

// volumeRoutes registers the volume endpoints; without a volume store
// they answer 501.
func (s *server) volumeRoutes(handle func(string, handlerFunc)) {
	if s.volumes == nil {
		handle("GET /volumes/{rest...}", noSuchObject("volume", ""))
		handle("/volumes", notImplemented)
		handle("/volumes/", notImplemented)
		return
	}
	h := func(f handlerFunc) handlerFunc {
		if s.volumes == nil {
			return notImplemented
		}
		return f
	}
	handle("POST /volumes/create", h(s.volumeCreate))
	handle("GET /volumes", h(s.volumeList))
	handle("POST /volumes/prune", h(s.volumePrune))
	handle("GET /volumes/{name}", h(s.volumeInspect))
	handle("DELETE /volumes/{name}", h(s.volumeRemove))
}

func (s *server) volumeOf(v *bvolume.Volume) volume.Volume {
	out := volume.Volume{
		Name: v.Name, Driver: v.Driver, Mountpoint: v.Mountpoint, Scope: "local",
		CreatedAt: v.CreatedAt.Format("2006-01-02T15:04:05Z07:00"),
		Labels:    v.Labels, Options: v.Options,
	}
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	if out.Options == nil {
		out.Options = map[string]string{}
	}
	return out
}

func (s *server) publishVolume(action events.Action, name string) {
	if s.events != nil {
		s.events.Log(events.VolumeEventType, action, name, map[string]string{"driver": bvolume.DriverLocal})
	}
}

// volumeCreate is POST /volumes/create; an empty name gets a random one.
func (s *server) volumeCreate(w http.ResponseWriter, r *http.Request) error {
	var req volume.CreateRequest
	if err := decodeStrict(r, &req); err != nil && !errors.Is(err, errEmptyBody) {
		return err
	}
	if req.Name == "" {
		req.Name = randomHex(32)
	}
	_, existed := s.volumes.Get(req.Name)
	v, err := s.volumes.Create(r.Context(), bvolume.CreateOptions{Name: req.Name, Driver: req.Driver, Labels: req.Labels, Options: req.DriverOpts})
	if err != nil {
		return err
	}
	if existed != nil {
		s.publishVolume(events.ActionCreate, v.Name)
	}
	writeJSON(w, http.StatusCreated, s.volumeOf(v))
	return nil
}

// volumeFilter applies GET /volumes's and prune's filters.
func (s *server) volumeFilter(f map[string][]string, allowed ...string) (func(*bvolume.Volume) bool, error) {
	for k := range f {
		if !slices.Contains(allowed, k) {
			return nil, invalid("invalid filter '%s'", k)
		}
	}
	for _, v := range f["dangling"] {
		switch strings.ToLower(v) {
		case "true", "1", "false", "0":
		default:
			return nil, invalid("invalid filter 'dangling=%s'", v)
		}
	}
	for _, v := range f["all"] {
		switch strings.ToLower(v) {
		case "true", "1", "false", "0":
		default:
			return nil, invalid("invalid filter 'all=%s'", v)
		}
	}
	return func(v *bvolume.Volume) bool {
		if vs := f["name"]; len(vs) > 0 && !slices.ContainsFunc(vs, func(n string) bool { return strings.Contains(v.Name, n) }) {
			return false
		}
		if vs := f["driver"]; len(vs) > 0 && !slices.Contains(vs, v.Driver) {
			return false
		}
		for _, l := range f["label"] {
			k, val, hasVal := strings.Cut(l, "=")
			got, ok := v.Labels[k]
			if !ok || (hasVal && got != val) {
				return false
			}
		}
		for _, l := range f["label!"] {
			k, val, hasVal := strings.Cut(l, "=")
			if got, ok := v.Labels[k]; ok && (!hasVal || got == val) {
				return false
			}
		}
		for _, d := range f["dangling"] {
			want := d == "true" || d == "1"
			if (len(s.volumes.Users(v.Name)) == 0) != want {
				return false
			}
		}
		return true
	}, nil
}

// volumeList is GET /volumes?filters=.
func (s *server) volumeList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	keep, err := s.volumeFilter(f, "name", "driver", "label", "dangling")
	if err != nil {
		return err
	}
	resp := volume.ListResponse{Volumes: []volume.Volume{}, Warnings: []string{}}
	for _, v := range s.volumes.List() {
		if keep(v) {
			resp.Volumes = append(resp.Volumes, s.volumeOf(v))
		}
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

// volumeInspect is GET /volumes/{name}.
func (s *server) volumeInspect(w http.ResponseWriter, r *http.Request) error {
	v, err := s.volumes.Get(r.PathValue("name"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s.volumeOf(v))
	return nil
}

// volumeRemove is DELETE /volumes/{name}?force=.
func (s *server) volumeRemove(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	_, getErr := s.volumes.Get(name)
	if err := s.volumes.Remove(r.Context(), name, bvolume.RemoveOptions{Force: boolValue(r, "force")}); err != nil {
		return err
	}
	if getErr == nil {
		s.publishVolume(events.ActionDestroy, name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// volumePrune is POST /volumes/prune?filters=: unused volumes, only the
// anonymous ones unless all=true (API 1.42+; older versions prune every
// unused volume).
func (s *server) volumePrune(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	keep, err := s.volumeFilter(f, "label", "label!", "all")
	if err != nil {
		return err
	}
	all := versionBelow(r, "1.42")
	for _, v := range f["all"] {
		all = v == "true" || v == "1"
	}
	report := volume.PruneReport{VolumesDeleted: []string{}}
	for _, v := range s.volumes.List() {
		if !keep(v) || len(s.volumes.Users(v.Name)) > 0 || (!all && !v.Anonymous()) {
			continue
		}
		size, _ := s.volumes.Size(v.Name)
		if err := s.volumes.Remove(r.Context(), v.Name, bvolume.RemoveOptions{}); err != nil {
			continue
		}
		s.publishVolume(events.ActionDestroy, v.Name)
		report.VolumesDeleted = append(report.VolumesDeleted, v.Name)
		report.SpaceReclaimed += uint64(size)
	}
	if s.events != nil {
		s.events.Log(events.VolumeEventType, events.ActionPrune, "", map[string]string{"reclaimed": itoa(report.SpaceReclaimed)})
	}
	writeJSON(w, http.StatusOK, report)
	return nil
}
