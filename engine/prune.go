package engine

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/internal/logctx"
)

// Prune removes the containers that do not run (docker container prune),
// narrowed by the filters until (created before) and label / label!
// (with or without a value); their anonymous volumes stay, as in dockerd.
// SpaceReclaimed sums their writable layers.
func (e *Engine) Prune(ctx context.Context, filters map[string][]string) (container.PruneReport, error) {
	f, err := parsePruneFilters(filters, time.Now())
	if err != nil {
		return container.PruneReport{}, err
	}
	report := container.PruneReport{ContainersDeleted: []string{}}
	for _, snap := range e.List(ctx) {
		if snap.State.Running || snap.State.Restarting || snap.State.Paused || !f.match(snap.Created, snap.Config.Labels) {
			continue
		}
		c, err := e.lookup(snap.ID)
		if err != nil {
			continue
		}
		size := layerSize(snap.UpperDir)
		c.op.Lock()
		err = e.pruneOne(ctx, c)
		c.op.Unlock()
		if err != nil {
			// Started meanwhile, or could not be removed: dockerd skips it.
			logctx.From(ctx).WarnContext(ctx, "prune container", "id", snap.ID, "error", err)
			continue
		}
		report.ContainersDeleted = append(report.ContainersDeleted, snap.ID)
		report.SpaceReclaimed += size
	}
	e.events.Publish(events.Message{Type: events.ContainerEventType, Action: events.ActionPrune,
		Actor: events.Actor{Attributes: map[string]string{"reclaimed": strconv.FormatUint(report.SpaceReclaimed, 10)}}})
	return report, nil
}

// layerSize is what dockerd reports as a writable layer's size (SizeRw,
// prune's reclaimed space): the sizes of its regular files.
func layerSize(upper string) uint64 {
	var n uint64
	if upper == "" {
		return 0
	}
	_ = filepath.WalkDir(upper, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			n += uint64(fi.Size())
		}
		return nil
	})
	return n
}

// pruneOne removes c unless it runs by now; called with c.op held.
func (e *Engine) pruneOne(ctx context.Context, c *ctr) error {
	if e.runs(c.rec.ID) {
		return fmt.Errorf("container %s runs", c.rec.ID)
	}
	return e.remove(ctx, c, removeOptions{})
}

// pruneFilter is a prune request's filters.
type pruneFilter struct {
	until     time.Time
	labels    []string
	notLabels []string
}

// parsePruneFilters reads until, label and label!, as dockerd's
// container prune does.
func parsePruneFilters(in map[string][]string, now time.Time) (pruneFilter, error) {
	var f pruneFilter
	for k, vs := range in {
		switch k {
		case "until":
			if len(vs) > 1 {
				return f, invalid("more than one until filter specified")
			}
			for _, v := range vs {
				t, err := parseUntil(v, now)
				if err != nil {
					return f, err
				}
				f.until = t
			}
		case "label":
			f.labels = append(f.labels, vs...)
		case "label!":
			f.notLabels = append(f.notLabels, vs...)
		default:
			return f, invalid("invalid filter '%s'", k)
		}
	}
	return f, nil
}

func (f pruneFilter) match(created time.Time, labels map[string]string) bool {
	if !f.until.IsZero() && !created.Before(f.until) {
		return false
	}
	has := func(l string) bool {
		k, v, withValue := strings.Cut(l, "=")
		got, ok := labels[k]
		return ok && (!withValue || got == v)
	}
	for _, l := range f.labels {
		if !has(l) {
			return false
		}
	}
	for _, l := range f.notLabels {
		if has(l) {
			return false
		}
	}
	return true
}

// parseUntil reads a timestamp the way dockerd's filters do: a Go
// duration before now ("24h"), seconds since the epoch with an optional
// fraction, or an RFC 3339 date, date-time or date.
func parseUntil(v string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return now.Add(-d), nil
	}
	sec, frac, hasFrac := strings.Cut(v, ".")
	if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
		var ns int64
		if hasFrac {
			if len(frac) > 9 {
				frac = frac[:9]
			}
			f, err := strconv.ParseInt(frac+strings.Repeat("0", 9-len(frac)), 10, 64)
			if err != nil {
				return time.Time{}, invalid("failed to parse value as time or duration: %q", v)
			}
			ns = f
		}
		return time.Unix(n, ns), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, v, time.Local); err == nil {
			return t, nil
		}
	}
	return time.Time{}, invalid("failed to parse value as time or duration: %q", v)
}
