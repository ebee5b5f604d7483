package dockerapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/moby/moby/api/types/events"

	bevents "github.com/berth-dev/berth/engine/events"
)

// legacyEvent is an event with the fields of the pre-1.22 format (status,
// id, from) beside the current ones, as dockerd sent them below API 1.52.
type legacyEvent struct {
	Status string `json:"status,omitempty"`
	ID     string `json:"id,omitempty"`
	From   string `json:"from,omitempty"`
	events.Message
}

// eventsHandler is GET /events?since=&until=&filters=: the kept events
// since `since`, then live ones until `until` (or until the client
// leaves). Headers go out at once.
func (s *server) eventsHandler(w http.ResponseWriter, r *http.Request) error {
	if s.events == nil {
		return notImplemented(w, r)
	}
	q := r.URL.Query()
	since, err := apiTime(q.Get("since"))
	if err != nil {
		return err
	}
	until, err := apiTime(q.Get("until"))
	if err != nil {
		return err
	}
	raw, err := parseFilters(q.Get("filters"))
	if err != nil {
		return err
	}
	f := bevents.Filter(raw)
	if err := f.Validate(); err != nil {
		return err
	}
	ctx := r.Context()
	if !until.IsZero() {
		var cancel func()
		ctx, cancel = contextUntil(ctx, until)
		defer cancel()
	}
	if !until.IsZero() && since.IsZero() {
		// A window in the past only: dockerd starts it at the oldest kept
		// event.
		since = time.Unix(0, 1)
	}
	past, live := s.events.Subscribe(ctx, since)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	flusher, _ := w.(http.Flusher)
	if flusher != nil {
		flusher.Flush()
	}
	enc := json.NewEncoder(w)
	send := func(m events.Message) bool {
		if !until.IsZero() && m.TimeNano > until.UnixNano() {
			return false
		}
		if !f.Match(m) {
			return true
		}
		// Every version gets the legacy fields, not only those below
		// 1.52: docker-compose 1.29 (docker-py) asks at the version
		// /version reports and reads a container event's "id" and
		// "status" (logs -f and up attached follow new containers so);
		// without them it crashes. To newer clients they are extra keys.
		le := legacyEvent{Message: m}
		if m.Type == events.ContainerEventType || m.Type == events.ImageEventType {
			le.Status, le.ID = string(m.Action), m.Actor.ID
			le.From = m.Actor.Attributes["image"]
		}
		err := enc.Encode(le)
		if flusher != nil {
			flusher.Flush()
		}
		return err == nil
	}
	for _, m := range past {
		if !send(m) {
			return nil
		}
	}
	if !until.IsZero() && !until.After(time.Now()) {
		return nil
	}
	for m := range live {
		if !send(m) {
			return nil
		}
	}
	return nil
}

// imageEvent publishes an image event as dockerd does: the image (or the
// reference) and its name.
func (s *server) imageEvent(action events.Action, id, name string) {
	if s.events != nil {
		s.events.Log(events.ImageEventType, action, id, map[string]string{"name": name})
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
