package engine

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
)

// ListOptions are GET /containers/json's query.
type ListOptions struct {
	// All lists stopped containers too; Limit (> 0) lists the Limit most
	// recent ones, stopped or not.
	All   bool
	Limit int
	// Filters are docker ps's filters, each key's values alternatives.
	Filters map[string][]string
}

// psFilterKeys are the filters dockerd accepts.
var psFilterKeys = []string{"ancestor", "before", "exited", "id", "isolation", "label", "name", "status", "health", "since", "volume", "network", "is-task", "publish", "expose"}

// containerFilter is a validated set of docker ps filters.
type containerFilter struct {
	f map[string][]string
	// exited are the exit codes asked for.
	exited []int
	// images are the image IDs of the ancestor filter (nil: none asked).
	images map[string]bool
	// before and since bound the listing by creation.
	before, since *Container
	isTask        *bool
	publish       map[string]bool
	expose        map[string]bool
	names         []*regexp.Regexp
}

// ListContainers returns the containers o selects, newest first.
func (e *Engine) ListContainers(ctx context.Context, o ListOptions) ([]*Container, error) {
	return e.selectContainers(ctx, e.List(ctx), o)
}

// selectContainers applies o to all (newest first).
func (e *Engine) selectContainers(ctx context.Context, all []*Container, o ListOptions) ([]*Container, error) {
	f, err := e.parseFilter(ctx, o.Filters, all)
	if err != nil {
		return nil, err
	}
	if len(f.f["status"]) > 0 {
		o.All = true
	}
	var out []*Container
	before := f.before
	for _, c := range all {
		if before != nil {
			// Newer than the "before" container: skip up to it.
			if c.ID == before.ID {
				before = nil
			}
			continue
		}
		if f.since != nil && c.ID == f.since.ID {
			break
		}
		if !c.State.Running && !o.All && o.Limit <= 0 {
			continue
		}
		if o.Limit > 0 && len(out) == o.Limit {
			break
		}
		if f.match(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

func (e *Engine) parseFilter(ctx context.Context, in map[string][]string, all []*Container) (*containerFilter, error) {
	f := &containerFilter{f: in}
	for k := range in {
		if !slices.Contains(psFilterKeys, k) {
			return nil, invalid("invalid filter '%s'", k)
		}
	}
	for _, v := range in["exited"] {
		code, err := strconv.Atoi(v)
		if err != nil {
			return nil, invalid("invalid filter 'exited=%s': %v", v, err)
		}
		f.exited = append(f.exited, code)
	}
	for _, v := range in["status"] {
		if err := container.ValidateContainerState(container.ContainerState(v)); err != nil {
			return nil, invalid("invalid filter 'status=%s': %v", v, err)
		}
	}
	for _, v := range in["health"] {
		switch v {
		case "starting", "healthy", "unhealthy", "none":
		default:
			return nil, invalid("invalid filter 'health=%s': Unrecognised filter value for health: %s", v, v)
		}
	}
	for _, v := range in["is-task"] {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, invalid("invalid filter 'is-task=%s'", v)
		}
		f.isTask = &b
	}
	for _, v := range in["name"] {
		re, err := regexp.Compile(v)
		if err != nil {
			return nil, invalid("invalid filter 'name=%s': %v", v, err)
		}
		f.names = append(f.names, re)
	}
	find := func(key, ref string) (*Container, error) {
		for _, c := range all {
			if c.ID == ref || c.Name == strings.TrimPrefix(ref, "/") || strings.HasPrefix(c.ID, ref) {
				return c, nil
			}
		}
		return nil, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such container: %s", ref))
	}
	for _, v := range in["before"] {
		c, err := find("before", v)
		if err != nil {
			return nil, err
		}
		f.before = c
	}
	for _, v := range in["since"] {
		c, err := find("since", v)
		if err != nil {
			return nil, err
		}
		f.since = c
	}
	if vs, ok := in["ancestor"]; ok {
		f.images = map[string]bool{}
		for _, v := range vs {
			img, err := e.images.Get(ctx, v)
			if err != nil {
				// dockerd ignores an unknown ancestor (it matches nothing).
				continue
			}
			f.images[img.ID.String()] = true
		}
	}
	ports := func(key string) (map[string]bool, error) {
		out := map[string]bool{}
		for _, v := range in[key] {
			if strings.Contains(v, ":") {
				return nil, invalid("filter for '%s' should not contain ':': %s", key, v)
			}
			num, proto, _ := strings.Cut(v, "/")
			if proto == "" {
				proto = "tcp"
			}
			lo, hi, isRange := strings.Cut(num, "-")
			if !isRange {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil || a > b || a < 0 || b > 65535 {
				return nil, invalid("error while looking up for %s %s: invalid port", key, v)
			}
			for p := a; p <= b; p++ {
				out[fmt.Sprintf("%d/%s", p, proto)] = true
			}
		}
		return out, nil
	}
	var err error
	if f.publish, err = ports("publish"); err != nil {
		return nil, err
	}
	if f.expose, err = ports("expose"); err != nil {
		return nil, err
	}
	return f, nil
}

// match applies the filters to one container.
func (f *containerFilter) match(c *Container) bool {
	if len(f.names) > 0 && !slices.ContainsFunc(f.names, func(re *regexp.Regexp) bool {
		return re.MatchString(c.Name) || re.MatchString("/"+c.Name)
	}) {
		return false
	}
	if ids := f.f["id"]; len(ids) > 0 && !slices.ContainsFunc(ids, func(v string) bool { return strings.HasPrefix(c.ID, v) }) {
		return false
	}
	if f.isTask != nil && *f.isTask {
		return false // no swarm tasks here
	}
	for _, v := range f.f["label"] {
		k, val, hasVal := strings.Cut(v, "=")
		got, ok := c.Config.Labels[k]
		if !ok || (hasVal && got != val) {
			return false
		}
	}
	if len(f.exited) > 0 && (c.State.Running || c.State.StartedAt.IsZero() || !slices.Contains(f.exited, c.State.ExitCode)) {
		return false
	}
	if vs := f.f["status"]; len(vs) > 0 && !slices.Contains(vs, string(c.State.Status)) {
		return false
	}
	if vs := f.f["health"]; len(vs) > 0 {
		h := string(container.NoHealthcheck)
		if c.State.Health != nil {
			h = string(c.State.Health.Status)
		}
		if !slices.Contains(vs, h) {
			return false
		}
	}
	if vs := f.f["isolation"]; len(vs) > 0 && !slices.Contains(vs, "default") && !slices.Contains(vs, "") {
		return false
	}
	if vs := f.f["volume"]; len(vs) > 0 && !slices.ContainsFunc(c.Mounts, func(m MountPoint) bool {
		return slices.Contains(vs, m.Destination) || (m.Name != "" && slices.Contains(vs, m.Name)) || (m.Name == "" && slices.Contains(vs, m.Source))
	}) {
		return false
	}
	if f.images != nil && !f.images[c.ImageID] {
		return false
	}
	if vs := f.f["network"]; len(vs) > 0 && !slices.ContainsFunc(vs, func(v string) bool {
		if _, ok := c.Networks[v]; ok {
			return true
		}
		for _, ep := range c.Networks {
			if ep != nil && ep.NetworkID != "" && strings.HasPrefix(ep.NetworkID, v) {
				return true
			}
		}
		return false
	}) {
		return false
	}
	if len(f.publish) > 0 || len(f.expose) > 0 {
		found := false
		for p, bindings := range c.Ports {
			if f.expose[p.String()] {
				found = true
			}
			for _, b := range bindings {
				if f.publish[b.HostPort+"/"+string(p.Proto())] {
					found = true
				}
			}
		}
		if !found {
			return false
		}
	}
	return true
}
