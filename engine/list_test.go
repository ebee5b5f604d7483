package engine

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/imagestore"
)

// fakeImages resolves two image names for the ancestor filter.
type fakeImages struct{}

func (fakeImages) Get(_ context.Context, ref string) (*imagestore.Image, error) {
	switch ref {
	case "busybox", "busybox:latest":
		return &imagestore.Image{ID: digest.Digest("sha256:" + strings.Repeat("b", 64))}, nil
	case "alpine":
		return &imagestore.Image{ID: digest.Digest("sha256:" + strings.Repeat("a", 64))}, nil
	}
	return nil, errdefs.ErrNotFound
}
func (fakeImages) Prepare(context.Context, string, string) ([]imagestore.Mount, error) {
	return nil, errdefs.ErrNotImplemented
}
func (fakeImages) View(context.Context, string, string) ([]imagestore.Mount, error) {
	return nil, nil
}
func (fakeImages) RemoveSnapshot(context.Context, string) error { return nil }

func listed(cs []*Container) string {
	var out []string
	for _, c := range cs {
		out = append(out, c.Name)
	}
	return strings.Join(out, " ")
}

// TestListFilters applies docker ps's filters, in both forms the API
// carries them, to containers in every state.
func TestListFilters(t *testing.T) {
	now := time.Now()
	mk := func(name, id string, st container.ContainerState, code int, labels map[string]string, image string, age time.Duration) *Container {
		c := &Container{ID: id + strings.Repeat("0", 64-len(id)), Name: name, Created: now.Add(-age), Config: &container.Config{Labels: labels}, HostConfig: &container.HostConfig{},
			ImageID: "sha256:" + strings.Repeat(image, 64), Networks: map[string]*network.EndpointSettings{"bridge": {NetworkID: "abc123"}}}
		c.State = State{Status: st, Running: st == container.StateRunning || st == container.StatePaused, Paused: st == container.StatePaused, ExitCode: code}
		if st != container.StateCreated {
			c.State.StartedAt = now.Add(-age)
		}
		return c
	}
	web := mk("web", "aa11", container.StateRunning, 0, map[string]string{"tier": "front", "app": "shop"}, "b", 1*time.Minute)
	db := mk("db", "bb22", container.StateExited, 3, map[string]string{"tier": "back"}, "a", 2*time.Minute)
	job := mk("job", "cc33", container.StateExited, 0, nil, "b", 3*time.Minute)
	idle := mk("idle", "dd44", container.StateCreated, 0, nil, "a", 4*time.Minute)
	pause := mk("frozen", "ee55", container.StatePaused, 0, nil, "b", 30*time.Second)
	mp := MountPoint{}
	mp.Type, mp.Name, mp.Destination = mount.TypeVolume, "dbdata", "/var/lib/db"
	db.Mounts = []MountPoint{mp}
	web.Ports = network.PortMap{network.MustParsePort("80/tcp"): {{HostPort: "8080"}}}
	all := []*Container{pause, web, db, job, idle} // newest first, as List gives them

	e := &Engine{images: fakeImages{}}
	run := func(o ListOptions) ([]*Container, error) { return e.selectContainers(t.Context(), all, o) }
	for _, c := range []struct {
		name string
		o    ListOptions
		want string
	}{
		{"running only", ListOptions{}, "frozen web"},
		{"all", ListOptions{All: true}, "frozen web db job idle"},
		{"limit", ListOptions{Limit: 2}, "frozen web"},
		{"name regexp", ListOptions{All: true, Filters: map[string][]string{"name": {"^d"}}}, "db"},
		{"name with slash", ListOptions{All: true, Filters: map[string][]string{"name": {"^/job$"}}}, "job"},
		{"id prefix", ListOptions{All: true, Filters: map[string][]string{"id": {"bb2"}}}, "db"},
		{"label key", ListOptions{All: true, Filters: map[string][]string{"label": {"tier"}}}, "web db"},
		{"label key=value", ListOptions{All: true, Filters: map[string][]string{"label": {"tier=front"}}}, "web"},
		{"labels all must match", ListOptions{All: true, Filters: map[string][]string{"label": {"tier=front", "app=shop"}}}, "web"},
		{"status exited", ListOptions{Filters: map[string][]string{"status": {"exited"}}}, "db job"},
		{"status alternatives", ListOptions{Filters: map[string][]string{"status": {"created", "paused"}}}, "frozen idle"},
		{"exited code", ListOptions{All: true, Filters: map[string][]string{"exited": {"3"}}}, "db"},
		{"exited 0 skips never-started", ListOptions{All: true, Filters: map[string][]string{"exited": {"0"}}}, "job"},
		{"ancestor", ListOptions{All: true, Filters: map[string][]string{"ancestor": {"alpine"}}}, "db idle"},
		{"unknown ancestor", ListOptions{All: true, Filters: map[string][]string{"ancestor": {"nosuch"}}}, ""},
		{"volume by name", ListOptions{All: true, Filters: map[string][]string{"volume": {"dbdata"}}}, "db"},
		{"volume by destination", ListOptions{All: true, Filters: map[string][]string{"volume": {"/var/lib/db"}}}, "db"},
		{"network", ListOptions{Filters: map[string][]string{"network": {"bridge"}}}, "frozen web"},
		{"network id prefix", ListOptions{Filters: map[string][]string{"network": {"abc"}}}, "frozen web"},
		{"health none", ListOptions{All: true, Filters: map[string][]string{"health": {"none"}}}, "frozen web db job idle"},
		{"health healthy", ListOptions{All: true, Filters: map[string][]string{"health": {"healthy"}}}, ""},
		{"before", ListOptions{All: true, Filters: map[string][]string{"before": {"web"}}}, "db job idle"},
		{"since", ListOptions{All: true, Filters: map[string][]string{"since": {"db"}}}, "frozen web"},
		{"publish", ListOptions{Filters: map[string][]string{"publish": {"8080"}}}, "web"},
		{"expose range", ListOptions{Filters: map[string][]string{"expose": {"79-81/tcp"}}}, "web"},
		{"is-task", ListOptions{All: true, Filters: map[string][]string{"is-task": {"true"}}}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := run(c.o)
			if err != nil {
				t.Fatal(err)
			}
			if listed(got) != c.want {
				t.Errorf("got %q, want %q", listed(got), c.want)
			}
		})
	}
	for filters, want := range map[string]string{
		"bogus":       "invalid filter 'bogus'",
		"status=zzz":  "invalid filter 'status=zzz'",
		"exited=x":    "invalid filter 'exited=x'",
		"health=zzz":  "invalid filter 'health=zzz'",
		"name=[":      "invalid filter 'name=['",
		"publish=1:2": "filter for 'publish' should not contain ':'",
		"before=none": "No such container: none",
	} {
		k, v, _ := strings.Cut(filters, "=")
		_, err := run(ListOptions{Filters: map[string][]string{k: {v}}})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("filter %s: %v, want %q", filters, err, want)
		}
		if strings.HasPrefix(filters, "before") {
			if !errdefs.IsNotFound(err) {
				t.Errorf("unknown before container: %v, want NotFound", err)
			}
		} else if !errdefs.IsInvalidArgument(err) {
			t.Errorf("filter %s: %v is not InvalidArgument", filters, err)
		}
	}
}

// TestHoldsSnapshot: the engine names its containers' writable layers by
// ID and their image mounts' views <ID>-im<n>; it holds those of the
// containers it has.
func TestHoldsSnapshot(t *testing.T) {
	id := strings.Repeat("ab", 32)
	e := &Engine{containers: map[string]*ctr{id: {rec: record{ID: id}}}}
	other := strings.Repeat("cd", 32)
	for _, c := range []struct {
		name       string
		mine, held bool
	}{
		{id, true, true},
		{id + "-im0", true, true},
		{id + "-im12", true, true},
		{other, true, false},
		{other + "-im3", true, false},
		{id + "-im", false, false},
		{id + "-iv0", false, false},
		{id + "-imx", false, false},
		{"build-1", false, false},
	} {
		mine, held := e.HoldsSnapshot(c.name)
		if mine != c.mine || held != c.held {
			t.Errorf("HoldsSnapshot(%s) = %v, %v; want %v, %v", c.name, mine, held, c.mine, c.held)
		}
	}
}
