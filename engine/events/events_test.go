package events

import (
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"
)

func TestFilter(t *testing.T) {
	ctr := func(action events.Action, id, name, image string, attrs map[string]string) events.Message {
		a := map[string]string{"name": name, "image": image}
		for k, v := range attrs {
			a[k] = v
		}
		return events.Message{Type: events.ContainerEventType, Action: action, Actor: events.Actor{ID: id, Attributes: a}, Scope: "local"}
	}
	start := ctr(events.ActionStart, "abcdef123456", "web", "busybox:latest", map[string]string{"tier": "front"})
	health := ctr("health_status: healthy", "abcdef123456", "web", "busybox", nil)
	vol := events.Message{Type: events.VolumeEventType, Action: events.ActionCreate, Actor: events.Actor{ID: "data", Attributes: map[string]string{"driver": "local"}}, Scope: "local"}
	img := events.Message{Type: events.ImageEventType, Action: events.ActionPull, Actor: events.Actor{ID: "busybox:latest", Attributes: map[string]string{"name": "busybox"}}, Scope: "local"}
	for _, c := range []struct {
		f    Filter
		m    events.Message
		want bool
	}{
		{Filter{}, start, true},
		{Filter{"type": {"container"}}, start, true},
		{Filter{"type": {"volume"}}, start, false},
		{Filter{"event": {"start", "die"}}, start, true},
		{Filter{"event": {"stop"}}, start, false},
		{Filter{"event": {"health_status"}}, health, true},
		{Filter{"container": {"web"}}, start, true},
		{Filter{"container": {"abcdef"}}, start, true},
		{Filter{"container": {"db"}}, start, false},
		{Filter{"container": {"web"}}, vol, false},
		{Filter{"volume": {"data"}}, vol, true},
		{Filter{"image": {"busybox"}}, start, true},
		{Filter{"image": {"busybox:latest"}}, img, true},
		{Filter{"image": {"alpine"}}, start, false},
		{Filter{"label": {"tier"}}, start, true},
		{Filter{"label": {"tier=front"}}, start, true},
		{Filter{"label": {"tier=back"}}, start, false},
		{Filter{"type": {"container"}, "event": {"start"}, "label": {"tier=front"}}, start, true},
		{Filter{"scope": {"swarm"}}, start, false},
	} {
		if got := c.f.Match(c.m); got != c.want {
			t.Errorf("%v on %s %s: %v, want %v", c.f, c.m.Type, c.m.Action, got, c.want)
		}
	}
	if err := (Filter{"bogus": {"x"}}).Validate(); err == nil {
		t.Error("unknown filter key accepted")
	}
	if err := (Filter{"type": {"spaceship"}}).Validate(); err == nil {
		t.Error("unknown type accepted")
	}
}

// TestBus: subscribers see what is published after they subscribed, the
// past from since, and nothing after their context ends; publishing never
// blocks on a subscriber that does not read.
func TestBus(t *testing.T) {
	b := New()
	b.Log(events.ContainerEventType, events.ActionCreate, "old", nil)
	mid := time.Now()
	time.Sleep(2 * time.Millisecond)
	b.Log(events.ContainerEventType, events.ActionStart, "recent", nil)
	past, live := b.Subscribe(t.Context(), mid)
	if len(past) != 1 || past[0].Actor.ID != "recent" {
		t.Fatalf("past since mid: %+v", past)
	}
	if p, _ := b.Subscribe(t.Context(), time.Time{}); len(p) != 0 {
		t.Errorf("a subscription without since got the past: %+v", p)
	}
	b.Log(events.ContainerEventType, events.ActionDie, "new", map[string]string{"exitCode": "1"})
	select {
	case m := <-live:
		if m.Actor.ID != "new" || m.Scope != "local" || m.TimeNano == 0 || m.Actor.Attributes["exitCode"] != "1" {
			t.Errorf("live event %+v", m)
		}
	case <-time.After(time.Second):
		t.Fatal("no live event")
	}
	for range 3 * buffer {
		b.Log(events.ContainerEventType, events.ActionStart, "flood", nil)
	}
	if b.Dropped() == 0 {
		t.Error("a subscriber that does not read should lose events, not block")
	}
}
