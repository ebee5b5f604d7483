// Package events is the standalone engine's event bus: every container,
// image, volume and network action, in Docker's message format
// (github.com/moby/moby/api/types/events), as GET /events streams them.
//
// Publishers never block: a subscriber that falls more than its buffer
// behind loses events (counted in Dropped). The bus keeps the most recent
// events so that a subscription can start in the past (docker events
// --since); older ones are gone, as in dockerd.
package events

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
)

// history is how many past events the bus keeps for --since; dockerd
// keeps 256.
const history = 1024

// buffer is each subscriber's channel capacity.
const buffer = 1024

// Bus fans events out. The zero value is not usable; see New.
type Bus struct {
	mu   sync.Mutex
	past []events.Message
	subs map[chan events.Message]struct{}
	// now is the clock (tests).
	now func() time.Time
	// dropped counts events lost by slow subscribers.
	dropped uint64
}

// New returns an empty Bus.
func New() *Bus {
	return &Bus{subs: map[chan events.Message]struct{}{}, now: time.Now}
}

// Publish stamps m with the time (when it has none) and the local scope,
// keeps it for late subscribers and sends it to every subscriber.
func (b *Bus) Publish(m events.Message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m.TimeNano == 0 {
		t := b.now()
		m.Time, m.TimeNano = t.Unix(), t.UnixNano()
	}
	if m.Scope == "" {
		m.Scope = "local"
	}
	if m.Actor.Attributes == nil {
		m.Actor.Attributes = map[string]string{}
	}
	// Trimmed once it holds twice the history, not at every event: a copy
	// of the whole history per event cost berthd more than the
	// healthchecks that caused the events (three per probe).
	if len(b.past) >= 2*history {
		b.past = append(b.past[:0:0], b.past[len(b.past)-history:]...)
	}
	b.past = append(b.past, m)
	for ch := range b.subs {
		select {
		case ch <- m:
		default:
			b.dropped++
		}
	}
}

// Log publishes an event of typ about the object id.
func (b *Bus) Log(typ events.Type, action events.Action, id string, attrs map[string]string) {
	b.Publish(events.Message{Type: typ, Action: action, Actor: events.Actor{ID: id, Attributes: maps.Clone(attrs)}})
}

// Subscribe returns the kept events at or after since (none when since is
// zero) and a channel of the events published from now on, until ctx ends
// (the channel is then closed).
func (b *Bus) Subscribe(ctx context.Context, since time.Time) ([]events.Message, <-chan events.Message) {
	ch := make(chan events.Message, buffer)
	b.mu.Lock()
	var past []events.Message
	if !since.IsZero() {
		for _, m := range b.past[max(0, len(b.past)-history):] {
			if m.TimeNano >= since.UnixNano() {
				past = append(past, m)
			}
		}
	}
	b.subs[ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs, ch)
		close(ch)
	})
	return past, ch
}

// Dropped is how many events slow subscribers lost.
func (b *Bus) Dropped() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dropped
}
