package dockerapi

import (
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	"github.com/berth-dev/berth/engine"
)

// containerList is GET /containers/json?all=&limit=&size=&filters=.
func (s *server) containerList(w http.ResponseWriter, r *http.Request) error {
	f, err := parseFilters(r.URL.Query().Get("filters"))
	if err != nil {
		return err
	}
	limit, err := intValue(r, "limit", 0)
	if err != nil {
		return err
	}
	cs, err := s.engine.ListContainers(r.Context(), engine.ListOptions{All: boolValue(r, "all"), Limit: limit, Filters: f})
	if err != nil {
		return err
	}
	size := boolValue(r, "size")
	out := make([]container.Summary, 0, len(cs))
	for _, c := range cs {
		sum := containerSummary(c)
		if size {
			sum.SizeRw, sum.SizeRootFs = s.containerSize(r, c)
		}
		out = append(out, sum)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// containerSummary is a container as docker ps lists it.
func containerSummary(c *engine.Container) container.Summary {
	sum := container.Summary{
		ID:      c.ID,
		Names:   []string{"/" + c.Name},
		Image:   c.Config.Image,
		ImageID: c.ImageID,
		Command: commandLine(c.Path, c.Args),
		Created: c.Created.Unix(),
		Ports:   portSummaries(c.Ports),
		Labels:  c.Config.Labels,
		State:   c.State.Status,
		Status:  statusString(c.State, time.Now()),
		Mounts:  []container.MountPoint{},
	}
	if sum.Labels == nil {
		sum.Labels = map[string]string{}
	}
	if h := c.State.Health; h != nil {
		sum.Health = &container.HealthSummary{Status: h.Status, FailingStreak: h.FailingStreak}
	}
	sum.HostConfig.NetworkMode = string(c.HostConfig.NetworkMode)
	sum.HostConfig.Annotations = c.HostConfig.Annotations
	sum.NetworkSettings = &container.NetworkSettingsSummary{Networks: c.Networks}
	for _, m := range c.Mounts {
		sum.Mounts = append(sum.Mounts, m.MountPoint)
	}
	return sum
}

// commandLine is docker ps's COMMAND: arguments with spaces quoted.
func commandLine(path string, args []string) string {
	if len(args) == 0 {
		return path
	}
	quoted := make([]string, 0, len(args))
	for _, a := range args {
		if strings.Contains(a, " ") {
			a = "'" + a + "'"
		}
		quoted = append(quoted, a)
	}
	return path + " " + strings.Join(quoted, " ")
}

// statusString is dockerd's human-readable status ("Up 3 minutes",
// "Exited (0) 2 seconds ago").
func statusString(st engine.State, now time.Time) string {
	switch {
	case st.Restarting:
		return fmt.Sprintf("Restarting (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
	case st.Paused:
		return fmt.Sprintf("Up %s (Paused)", units.HumanDuration(now.Sub(st.StartedAt)))
	case st.Running && st.Health != nil:
		h := string(st.Health.Status)
		if st.Health.Status == container.Starting {
			h = "health: starting"
		}
		return fmt.Sprintf("Up %s (%s)", units.HumanDuration(now.Sub(st.StartedAt)), h)
	case st.Running:
		return fmt.Sprintf("Up %s", units.HumanDuration(now.Sub(st.StartedAt)))
	case st.Status == container.StateRemoving:
		return "Removal In Progress"
	case st.Dead:
		return "Dead"
	case st.StartedAt.IsZero():
		return "Created"
	case st.FinishedAt.IsZero():
		return ""
	}
	return fmt.Sprintf("Exited (%d) %s ago", st.ExitCode, units.HumanDuration(now.Sub(st.FinishedAt)))
}

// portSummaries lists published and exposed ports as docker ps shows them.
func portSummaries(pm network.PortMap) []container.PortSummary {
	out := []container.PortSummary{}
	for p, bindings := range pm {
		if len(bindings) == 0 {
			out = append(out, container.PortSummary{PrivatePort: p.Num(), Type: string(p.Proto())})
			continue
		}
		for _, b := range bindings {
			var pub uint16
			fmt.Sscan(b.HostPort, &pub)
			out = append(out, container.PortSummary{IP: b.HostIP, PrivatePort: p.Num(), PublicPort: pub, Type: string(p.Proto())})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].PrivatePort != out[j].PrivatePort {
			return out[i].PrivatePort < out[j].PrivatePort
		}
		return out[i].Type < out[j].Type
	})
	return out
}

// containerSize is the writable layer's size and, with the image's, the
// whole root filesystem's.
func (s *server) containerSize(r *http.Request, c *engine.Container) (rw, rootfs int64) {
	if c.UpperDir != "" {
		_ = filepath.WalkDir(c.UpperDir, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
				rw += fi.Size()
			}
			return nil
		})
	}
	rootfs = rw
	if img, err := s.images.Get(r.Context(), c.ImageID); err == nil {
		rootfs += displaySize(img)
	}
	return rw, rootfs
}
