package events

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/events"
)

// Filter selects events by docker's event filters: each key's values are
// alternatives (any may match), and every key must match.
type Filter map[string][]string

// filterKeys are the keys GET /events accepts.
var filterKeys = []string{"config", "container", "daemon", "event", "image", "label", "network", "node", "plugin", "scope", "secret", "service", "type", "volume"}

// Validate refuses unknown keys and types, with dockerd's messages.
func (f Filter) Validate() error {
	for k, vs := range f {
		if !slices.Contains(filterKeys, k) {
			return fmt.Errorf("invalid filter '%s': %w", k, errdefs.ErrInvalidArgument)
		}
		if k == "type" {
			for _, v := range vs {
				switch events.Type(v) {
				case events.BuilderEventType, events.ConfigEventType, events.ContainerEventType, events.DaemonEventType,
					events.ImageEventType, events.NetworkEventType, events.NodeEventType, events.PluginEventType,
					events.SecretEventType, events.ServiceEventType, events.VolumeEventType:
				default:
					return fmt.Errorf("unknown event type: %s: %w", v, errdefs.ErrInvalidArgument)
				}
			}
		}
	}
	return nil
}

// Match reports whether m passes f.
func (f Filter) Match(m events.Message) bool {
	attrs := m.Actor.Attributes
	// Object filters match the actor's ID or its name.
	object := func(key string, typ events.Type) bool {
		vs, ok := f[key]
		if !ok {
			return true
		}
		if m.Type != typ {
			return false
		}
		for _, v := range vs {
			// dockerd's fuzzy match: equal, or a prefix of the ID or name.
			if v != "" && (strings.HasPrefix(m.Actor.ID, v) || strings.HasPrefix(attrs["name"], v)) {
				return true
			}
		}
		return false
	}
	if vs, ok := f["type"]; ok && !slices.Contains(vs, string(m.Type)) {
		return false
	}
	if vs, ok := f["event"]; ok {
		found := false
		for _, v := range vs {
			// "health_status: healthy" also matches "health_status".
			a := string(m.Action)
			if v == a || (strings.Contains(a, ":") && v == strings.TrimSpace(strings.SplitN(a, ":", 2)[0])) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if vs, ok := f["scope"]; ok && !slices.Contains(vs, m.Scope) {
		return false
	}
	if vs, ok := f["image"]; ok {
		img := attrs["image"]
		if m.Type == events.ImageEventType {
			img = m.Actor.ID
		}
		found := false
		for _, v := range vs {
			if v == img || v == attrs["name"] || strings.TrimSuffix(img, ":latest") == strings.TrimSuffix(v, ":latest") {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if vs, ok := f["label"]; ok {
		for _, v := range vs {
			k, val, hasVal := strings.Cut(v, "=")
			got, present := attrs[k]
			if !present || (hasVal && got != val) {
				return false
			}
		}
	}
	return object("container", events.ContainerEventType) &&
		object("volume", events.VolumeEventType) &&
		object("network", events.NetworkEventType) &&
		object("plugin", events.PluginEventType) &&
		object("daemon", events.DaemonEventType)
}
