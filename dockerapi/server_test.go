package dockerapi

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/engine"
	"github.com/berth-dev/berth/imagestore"
)

func newTestServer(t *testing.T, imgs Images) (*httptest.Server, *client.Client) {
	t.Helper()
	srv := httptest.NewServer(NewHandler(imgs, Options{Root: "/var/lib/berth-test", Version: "0.0.1-test"}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.WithHost("tcp://"+srv.Listener.Addr().String()), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return srv, c
}

func do(t *testing.T, srv *httptest.Server, method, path string, body io.Reader, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestPingHeadersAndNegotiation(t *testing.T) {
	srv, c := newTestServer(t, dockerapitest.New())
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp, body := do(t, srv, m, "/_ping", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("%s /_ping: status %d", m, resp.StatusCode)
		}
		for h, want := range map[string]string{"API-Version": maxAPIVersion, "OSType": "linux", "Docker-Experimental": "false", "Pragma": "no-cache"} {
			if got := resp.Header.Get(h); got != want {
				t.Errorf("%s /_ping header %s = %q, want %q", m, h, got, want)
			}
		}
		if resp.Header.Get("Cache-Control") == "" {
			t.Errorf("%s /_ping: no Cache-Control", m)
		}
		if m == http.MethodGet && body != "OK" {
			t.Errorf("GET /_ping body %q", body)
		}
	}
	p, err := c.Ping(t.Context(), client.PingOptions{NegotiateAPIVersion: true})
	if err != nil {
		t.Fatal(err)
	}
	if p.APIVersion != maxAPIVersion || p.OSType != "linux" {
		t.Errorf("ping = %+v", p)
	}
	v, err := c.ServerVersion(t.Context(), client.ServerVersionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "0.0.1-test" || v.APIVersion != maxAPIVersion || v.MinAPIVersion != minAPIVersion {
		t.Errorf("version = %+v", v)
	}
	if c.ClientVersion() != maxAPIVersion {
		t.Errorf("negotiated %s, want %s", c.ClientVersion(), maxAPIVersion)
	}
}

func TestVersionPrefixes(t *testing.T) {
	srv, _ := newTestServer(t, dockerapitest.New())
	for _, tc := range []struct {
		path   string
		status int
		msg    string
	}{
		{"/v1.40/version", 200, ""},
		{"/v1.57/_ping", 200, ""},
		{"/v1.39/version", 400, "client version 1.39 is too old. Minimum supported API version is 1.40"},
		{"/v1.58/version", 400, "client version 1.58 is too new. Maximum supported API version is 1.57"},
		{"/v1.45/nope", 404, "page not found"},
		{"/v1.45/containers/json", 501, "not implemented in berth yet"},
		{"/networks", 501, "not implemented in berth yet"},
		{"/v1.45/containers/abc/json", 404, "No such container: abc"},
		{"/containers/abc/logs", 501, "not implemented in berth yet"},
		{"/volumes/data", 404, "No such volume: data"},
	} {
		resp, body := do(t, srv, http.MethodGet, tc.path, nil)
		if resp.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d (%s)", tc.path, resp.StatusCode, tc.status, body)
		}
		if tc.msg != "" {
			var e errorResponse
			if err := json.Unmarshal([]byte(body), &e); err != nil || !strings.Contains(e.Message, tc.msg) {
				t.Errorf("GET %s: body %q, want message containing %q", tc.path, body, tc.msg)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("GET %s: content type %q", tc.path, ct)
			}
		}
	}
}

func TestErrorStatusMapping(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("x: %w", errdefs.ErrNotFound), 404},
		{fmt.Errorf("x: %w", errdefs.ErrInvalidArgument), 400},
		{fmt.Errorf("x: %w", errdefs.ErrConflict), 409},
		{fmt.Errorf("x: %w", errdefs.ErrAlreadyExists), 409},
		{fmt.Errorf("x: %w", errdefs.ErrUnauthenticated), 401},
		{fmt.Errorf("x: %w", errdefs.ErrNotImplemented), 501},
		{fmt.Errorf("plain"), 500},
	} {
		rec := httptest.NewRecorder()
		writeError(rec, tc.err)
		if rec.Code != tc.want {
			t.Errorf("%v: status %d, want %d", tc.err, rec.Code, tc.want)
		}
		var e errorResponse
		if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Message != tc.err.Error() {
			t.Errorf("%v: body %q", tc.err, rec.Body.String())
		}
	}
}

func TestInfo(t *testing.T) {
	f := dockerapitest.New()
	f.Add(dockerapitest.Image("a", "busybox"))
	_, c := newTestServer(t, f)
	info, err := c.Info(t.Context(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Info.Images != 1 || info.Info.DockerRootDir != "/var/lib/berth-test" || info.Info.OSType != "linux" || info.Info.ServerVersion != "0.0.1-test" {
		t.Errorf("info = %+v", info.Info)
	}
	// The drivers are what berthd was given, not literals.
	if info.Info.CgroupDriver != "" || info.Info.LoggingDriver != "" {
		t.Errorf("drivers without options = %q, %q; want none", info.Info.CgroupDriver, info.Info.LoggingDriver)
	}
	srv := httptest.NewServer(NewHandler(f, Options{Root: "/r", CgroupDriver: "systemd", LoggingDriver: "journald"}))
	defer srv.Close()
	_, body := do(t, srv, http.MethodGet, "/info", nil)
	var got struct{ CgroupDriver, LoggingDriver string }
	if err := json.Unmarshal([]byte(body), &got); err != nil || got.CgroupDriver != "systemd" || got.LoggingDriver != "journald" {
		t.Errorf("/info drivers = %+v (%v), want systemd and journald", got, err)
	}
}

func readMessages(t *testing.T, r io.Reader) []message {
	t.Helper()
	var out []message
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var m message
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("decode %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestPullStreamsProgress(t *testing.T) {
	f := dockerapitest.New()
	img := dockerapitest.Image("bb")
	f.Remote["127.0.0.1:5000/berth/busybox:latest"] = img
	_, c := newTestServer(t, f)
	auth, _ := json.Marshal(registry.AuthConfig{Username: "u", Password: "p"})
	resp, err := c.ImagePull(t.Context(), "127.0.0.1:5000/berth/busybox", client.ImagePullOptions{
		RegistryAuth: base64.URLEncoding.EncodeToString(auth),
	})
	if err != nil {
		t.Fatal(err)
	}
	msgs := readMessages(t, resp)
	resp.Close()
	var statuses []string
	for _, m := range msgs {
		statuses = append(statuses, m.Status)
	}
	want := []string{"Pulling from berth/busybox", "Pulling fs layer", "Downloading", "Pull complete",
		"Digest: " + img.ManifestDigest.String(), "Status: Downloaded newer image for 127.0.0.1:5000/berth/busybox:latest"}
	if strings.Join(statuses, "|") != strings.Join(want, "|") {
		t.Errorf("statuses:\n got %q\nwant %q", statuses, want)
	}
	if msgs[0].ID != "latest" || msgs[2].Progress == nil || msgs[2].Progress.Total != 900 || msgs[2].ID != img.Layers[0].Digest.Encoded()[:12] {
		t.Errorf("messages = %+v", msgs)
	}
	if f.LastAuth == nil || f.LastAuth.Username != "u" || f.LastAuth.Password != "p" {
		t.Errorf("auth passed to store = %+v", f.LastAuth)
	}

	// Second pull of the same image is "up to date".
	resp, err = c.ImagePull(t.Context(), "127.0.0.1:5000/berth/busybox:latest", client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	msgs = readMessages(t, resp)
	resp.Close()
	if last := msgs[len(msgs)-1].Status; last != "Status: Image is up to date for 127.0.0.1:5000/berth/busybox:latest" {
		t.Errorf("second pull last status %q", last)
	}
}

func TestPullErrors(t *testing.T) {
	f := dockerapitest.New()
	_, c := newTestServer(t, f)
	// Unknown before any progress: a 404 the client turns into an error.
	_, err := c.ImagePull(t.Context(), "nosuch", client.ImagePullOptions{})
	if !errdefs.IsNotFound(err) {
		t.Fatalf("pull of unknown image: err = %v, want NotFound", err)
	}
	// Failure after progress: an error message in the stream.
	f.Remote["docker.io/library/busybox:latest"] = dockerapitest.Image("x")
	f.MidErr = fmt.Errorf("read layer: connection reset")
	resp, err := c.ImagePull(t.Context(), "busybox", client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Close()
	var got error
	for m, err := range resp.JSONMessages(t.Context()) {
		if err != nil {
			t.Fatal(err)
		}
		if m.Error != nil {
			got = m.Error
		}
	}
	if got == nil || !strings.Contains(got.Error(), "connection reset") {
		t.Errorf("stream error = %v", got)
	}
	// Raw form carries both errorDetail and the legacy error string.
	srv, _ := newTestServer(t, f)
	_, body := do(t, srv, http.MethodPost, "/v1.44/images/create?fromImage=busybox&tag=latest", nil)
	if !strings.Contains(body, `"errorDetail":{"message":"read layer: connection reset"},"error":"read layer: connection reset"`) {
		t.Errorf("stream body = %s", body)
	}
	// Bad auth header.
	resp2, _ := do(t, srv, http.MethodPost, "/images/create?fromImage=busybox", nil, registry.AuthHeader, "!!!")
	if resp2.StatusCode != 400 {
		t.Errorf("bad X-Registry-Auth: status %d", resp2.StatusCode)
	}
	resp3, _ := do(t, srv, http.MethodPost, "/images/create", nil)
	if resp3.StatusCode != 400 {
		t.Errorf("no fromImage: status %d", resp3.StatusCode)
	}
}

func TestListFilters(t *testing.T) {
	f := dockerapitest.New()
	a := dockerapitest.Image("a", "busybox:latest", "127.0.0.1:5000/berth/busybox:1")
	b := dockerapitest.Image("b", "alpine:3")
	d := dockerapitest.Image("d")
	for _, img := range []*imagestore.Image{a, b, d} {
		f.Add(img)
	}
	_, c := newTestServer(t, f)
	var items []image.Summary
	list := func(filters client.Filters) []string {
		t.Helper()
		res, err := c.ImageList(t.Context(), client.ImageListOptions{Filters: filters})
		if err != nil {
			t.Fatal(err)
		}
		items = res.Items
		var ids []string
		for _, s := range res.Items {
			ids = append(ids, s.ID)
		}
		return ids
	}
	if got := list(nil); len(got) != 3 {
		t.Errorf("all: %v", got)
	}
	for _, s := range items {
		if s.ID == a.ID.String() && (len(s.RepoTags) != 2 || s.RepoTags[0] != "busybox:latest" || s.Size != 2_200_000 || s.Labels["seed"] != "a" || s.Containers != -1) {
			t.Errorf("summary of a = %+v", s)
		}
	}
	if got := list(client.Filters{}.Add("reference", "busybox")); len(got) != 1 || got[0] != a.ID.String() {
		t.Errorf("reference=busybox: %v", got)
	}
	// As dockerd, the filter narrows the tags shown too.
	if tags := items[0].RepoTags; len(tags) != 1 || tags[0] != "busybox:latest" {
		t.Errorf("reference=busybox shows tags %v", tags)
	}
	if got := list(client.Filters{}.Add("reference", "*/berth/*")); len(got) != 1 || got[0] != a.ID.String() {
		t.Errorf("reference=*/berth/*: %v", got)
	}
	if got := list(client.Filters{}.Add("dangling", "true")); len(got) != 1 || got[0] != d.ID.String() {
		t.Errorf("dangling=true: %v", got)
	}
	if got := list(client.Filters{}.Add("label", "seed=b")); len(got) != 1 || got[0] != b.ID.String() {
		t.Errorf("label=seed=b: %v", got)
	}
	_, err := c.ImageList(t.Context(), client.ImageListOptions{Filters: client.Filters{}.Add("bogus", "1")})
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("bogus filter: %v", err)
	}
}

func TestInspectTagRemove(t *testing.T) {
	f := dockerapitest.New()
	a := dockerapitest.Image("a", "127.0.0.1:5000/berth/busybox:latest")
	f.Add(a)
	srv, c := newTestServer(t, f)

	res, err := c.ImageInspect(t.Context(), "127.0.0.1:5000/berth/busybox:latest")
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != a.ID.String() || res.RootFS.Type != "layers" || len(res.RootFS.Layers) != 1 || res.Os != "linux" ||
		res.Architecture != "amd64" || res.Config == nil || res.Config.Cmd[0] != "sh" || res.Created != "2026-01-02T03:04:05Z" {
		t.Errorf("inspect = %+v", res.InspectResponse)
	}
	if _, err := c.ImageInspect(t.Context(), "nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("inspect nosuch: %v", err)
	}
	// An image literally named ".../json" would be ambiguous; a short ID works.
	resp, _ := do(t, srv, http.MethodGet, "/v1.47/images/"+a.ID.Encoded()[:12]+"/json", nil)
	if resp.StatusCode != 200 {
		t.Errorf("inspect by short id: %d", resp.StatusCode)
	}

	if _, err := c.ImageTag(t.Context(), client.ImageTagOptions{Source: "127.0.0.1:5000/berth/busybox", Target: "mine:v1"}); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a.RepoTags, "docker.io/library/mine:v1") {
		t.Errorf("tags after tag: %v", a.RepoTags)
	}
	if _, err := c.ImageTag(t.Context(), client.ImageTagOptions{Source: "nosuch", Target: "x"}); !errdefs.IsNotFound(err) {
		t.Errorf("tag nosuch: %v", err)
	}

	// By ID with two tags: conflict unless forced.
	if _, err := c.ImageRemove(t.Context(), a.ID.String(), client.ImageRemoveOptions{}); !errdefs.IsConflict(err) {
		t.Errorf("remove by id without force: %v", err)
	}
	rm, err := c.ImageRemove(t.Context(), "mine:v1", client.ImageRemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Items) != 1 || rm.Items[0].Untagged != "mine:v1" {
		t.Errorf("remove tag: %+v", rm.Items)
	}
	rm, err = c.ImageRemove(t.Context(), "127.0.0.1:5000/berth/busybox", client.ImageRemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Items) != 2 || rm.Items[0].Untagged != "127.0.0.1:5000/berth/busybox:latest" || rm.Items[1].Deleted != a.ID.String() {
		t.Errorf("remove last tag: %+v", rm.Items)
	}
	if _, err := c.ImageRemove(t.Context(), "busybox", client.ImageRemoveOptions{}); !errdefs.IsNotFound(err) {
		t.Errorf("remove missing: %v", err)
	}
}

func TestPush(t *testing.T) {
	f := dockerapitest.New()
	a := dockerapitest.Image("a", "127.0.0.1:5000/berth/busybox:latest", "127.0.0.1:5000/berth/busybox:1")
	f.Add(a)
	_, c := newTestServer(t, f)
	resp, err := c.ImagePush(t.Context(), "127.0.0.1:5000/berth/busybox:1", client.ImagePushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	msgs := readMessages(t, resp)
	resp.Close()
	if len(msgs) != 4 || msgs[0].Status != "The push refers to repository [127.0.0.1:5000/berth/busybox]" ||
		msgs[1].Status != "Pushed" || msgs[2].Status != "1: digest: "+a.ManifestDigest.String()+" size: 527" || msgs[2].ID != "" ||
		msgs[3].Aux == nil || string(*msgs[3].Aux) != `{"Tag":"1","Digest":"`+a.ManifestDigest.String()+`","Size":527}` {
		t.Errorf("push messages = %+v", msgs)
	}
	if len(f.Pushed) != 1 || f.Pushed[0] != "127.0.0.1:5000/berth/busybox:1" {
		t.Errorf("pushed %v", f.Pushed)
	}
	// All tags.
	f.Pushed = nil
	resp, err = c.ImagePush(t.Context(), "127.0.0.1:5000/berth/busybox", client.ImagePushOptions{All: true, RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	readMessages(t, resp)
	resp.Close()
	if len(f.Pushed) != 2 {
		t.Errorf("push all tags pushed %v", f.Pushed)
	}
	if _, err := c.ImagePush(t.Context(), "127.0.0.1:5000/nosuch:1", client.ImagePushOptions{RegistryAuth: "e30="}); !errdefs.IsNotFound(err) {
		t.Errorf("push missing: %v", err)
	}
}

func TestSaveLoad(t *testing.T) {
	f := dockerapitest.New()
	f.Add(dockerapitest.Image("a", "busybox"))
	srv, c := newTestServer(t, f)
	rc, err := c.ImageSave(t.Context(), []string{"busybox"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "TAR:busybox" {
		t.Errorf("save body %q", b)
	}
	resp, body := do(t, srv, http.MethodGet, "/images/busybox/get", nil)
	if resp.StatusCode != 200 || body != "TAR:busybox" || resp.Header.Get("Content-Type") != "application/x-tar" {
		t.Errorf("GET /images/busybox/get: %d %q", resp.StatusCode, body)
	}
	if _, err := c.ImageSave(t.Context(), []string{"nosuch"}); !errdefs.IsNotFound(err) {
		t.Errorf("save missing: %v", err)
	}

	lr, err := c.ImageLoad(t.Context(), strings.NewReader("TAR:loaded:v2"), client.ImageLoadWithQuiet(true))
	if err != nil {
		t.Fatal(err)
	}
	msgs := readMessages(t, lr)
	lr.Close()
	if len(msgs) != 1 || msgs[0].Stream != "Loaded image: loaded:v2\n" {
		t.Errorf("load messages %+v", msgs)
	}
	if _, err := c.ImageLoad(t.Context(), bytes.NewReader([]byte("garbage"))); !errdefs.IsInvalidArgument(err) {
		t.Errorf("load garbage: %v", err)
	}
}

func TestAuth(t *testing.T) {
	f := dockerapitest.New()
	// Hide Login: a store without it answers NotImplemented.
	_, c := newTestServer(t, struct{ Images }{f})
	_, err := c.RegistryLogin(t.Context(), client.RegistryLoginOptions{Username: "u", Password: "p", ServerAddress: "127.0.0.1:5000"})
	if !errdefs.IsNotImplemented(err) {
		t.Errorf("login without Login support: %v", err)
	}
	f.Logins["u"] = "p"
	_, c = newTestServer(t, f)
	res, err := c.RegistryLogin(t.Context(), client.RegistryLoginOptions{Username: "u", Password: "p", ServerAddress: "127.0.0.1:5000"})
	if err != nil || res.Auth.Status != "Login Succeeded" {
		t.Errorf("login: %+v %v", res, err)
	}
	_, err = c.RegistryLogin(t.Context(), client.RegistryLoginOptions{Username: "u", Password: "wrong", ServerAddress: "127.0.0.1:5000"})
	if !errdefs.IsUnauthorized(err) {
		t.Errorf("login with a wrong password: %v", err)
	}
}

// failingList is a store whose List fails.
type failingList struct{ *dockerapitest.Store }

func (failingList) List(context.Context) ([]*imagestore.Image, error) {
	return nil, fmt.Errorf("list: %w", errdefs.ErrUnavailable)
}

func TestInfoWarnsWhenListFails(t *testing.T) {
	_, c := newTestServer(t, failingList{dockerapitest.New()})
	info, err := c.Info(t.Context(), client.InfoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Info.Warnings) != 1 || !strings.Contains(info.Info.Warnings[0], "list images") {
		t.Errorf("warnings = %v", info.Info.Warnings)
	}
}

// TestImageInspectContainerConfig: ContainerConfig (the classic build's
// container_config, or an empty one) below API 1.45, as dockerd, and for
// docker-compose 1.x at any version: it reads it when it recreates a
// container. Other clients at 1.45+ get docker's current shape.
func TestImageInspectContainerConfig(t *testing.T) {
	f := dockerapitest.New()
	a := dockerapitest.Image("a", "built:v1")
	a.RawConfig = []byte(`{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"container_config":{"Cmd":["/bin/sh","-c","#(nop) CMD [\"sh\"]"],"Volumes":{"/data":{}}}}`)
	b := dockerapitest.Image("b", "pulled:v1")
	f.Add(a)
	f.Add(b)
	srv, _ := newTestServer(t, f)
	for _, c := range []struct {
		path, ua string
		want     string // ContainerConfig's Cmd and Volumes; empty: none
	}{
		{"/v1.44/images/built:v1/json", "Docker-Client/28.2.2 (linux)", `[/bin/sh -c #(nop) CMD ["sh"]] map[/data:{}]`},
		{"/v1.57/images/built:v1/json", "docker-compose/1.29.2 docker-py/7.1.0 Linux/6.1.0", `[/bin/sh -c #(nop) CMD ["sh"]] map[/data:{}]`},
		{"/v1.57/images/pulled:v1/json", "docker-compose/1.29.2 docker-py/7.1.0 Linux/6.1.0", `[] map[]`},
		{"/v1.57/images/built:v1/json", "Docker-Client/28.2.2 (linux)", ""},
		{"/v1.45/images/built:v1/json", "docker-sdk-python/7.1.0", ""},
	} {
		resp, body := do(t, srv, http.MethodGet, c.path, nil, "User-Agent", c.ua)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		cc, ok := got["ContainerConfig"]
		switch {
		case c.want == "" && ok:
			t.Errorf("%s (%s): ContainerConfig %s, want none", c.path, c.ua, cc)
		case c.want != "":
			var cfg struct {
				Cmd     []string
				Volumes map[string]struct{}
			}
			if err := json.Unmarshal(cc, &cfg); err != nil || fmt.Sprint(cfg.Cmd, " ", cfg.Volumes) != c.want {
				t.Errorf("%s (%s): ContainerConfig %s (%v), want %s", c.path, c.ua, cc, err, c.want)
			}
		}
		if _, ok := got["Id"]; !ok {
			t.Errorf("%s: no Id in %s", c.path, body)
		}
	}
}

func TestNoSuchContainerPath(t *testing.T) {
	// The container routes as registered with an engine: a name with a
	// slash reaches none of them and gets docker's 404 for an endpoint
	// that exists, a 501 otherwise. (The engine is never called.)
	srv := httptest.NewServer(NewHandler(dockerapitest.New(), Options{Engine: &engine.Engine{}}))
	t.Cleanup(srv.Close)
	for _, tc := range []struct {
		method, path string
		status       int
		msg          string
	}{
		{"GET", "/v1.51/containers/127.0.0.1:5000/app/web:1/json", 404, "No such container: 127.0.0.1:5000/app/web:1"},
		{"POST", "/containers/a/b/start", 404, "No such container: a/b"},
		{"POST", "/containers/a/b/exec", 404, "No such container: a/b"},
		{"PUT", "/containers/a/b/archive", 404, "No such container: a/b"},
		{"DELETE", "/containers/a/b", 404, "No such container: a/b"},
		{"GET", "/containers/a/b/nope", 501, "not implemented"},
		{"POST", "/containers/a/b/json", 501, "not implemented"},
	} {
		resp, body := do(t, srv, tc.method, tc.path, nil)
		if resp.StatusCode != tc.status || !strings.Contains(body, tc.msg) {
			t.Errorf("%s %s: %d %s, want %d %q", tc.method, tc.path, resp.StatusCode, body, tc.status, tc.msg)
		}
	}
}
