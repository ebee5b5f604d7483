package dockerapi

import (
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/events"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	bevents "github.com/berth-dev/berth/engine/events"
)

// TestEventsLegacyFields: a container event carries the pre-1.22 status,
// id and from beside Type/Action/Actor at every API version, as
// docker-compose 1.29 reads them at the version /version reports.
func TestEventsLegacyFields(t *testing.T) {
	bus := bevents.New()
	srv := httptest.NewServer(NewHandler(dockerapitest.New(), Options{Root: "/r", Events: bus}))
	t.Cleanup(srv.Close)
	start := time.Now().Add(-time.Second)
	bus.Log(events.ContainerEventType, events.ActionStart, "c0ffee", map[string]string{"image": "busybox", "name": "web", "com.docker.compose.project": "tut"})
	bus.Log(events.NetworkEventType, events.ActionCreate, "n1", map[string]string{"name": "tut_default"})
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	since := strconv.FormatInt(start.Unix(), 10)
	for _, v := range []string{"/v1.41", "/v1.51", "/v1.52", "/v1.57", ""} {
		resp, body := do(t, srv, "GET", v+"/events?since="+since+"&until="+until, nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s/events: %d %s", v, resp.StatusCode, body)
		}
		lines := strings.Split(strings.TrimSpace(body), "\n")
		if len(lines) != 2 {
			t.Fatalf("%s/events: %d events, want 2:\n%s", v, len(lines), body)
		}
		var c, n map[string]any
		if err := json.Unmarshal([]byte(lines[0]), &c); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(lines[1]), &n); err != nil {
			t.Fatal(err)
		}
		if c["status"] != "start" || c["id"] != "c0ffee" || c["from"] != "busybox" || c["Type"] != "container" || c["Action"] != "start" {
			t.Errorf("%s container event: %v", v, c)
		}
		if _, ok := n["id"]; ok || n["Type"] != "network" {
			t.Errorf("%s network event (no legacy fields in docker's either): %v", v, n)
		}
	}
}
