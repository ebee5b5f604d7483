package dockerapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	digest "github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/builder"
	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/imagestore"
)

// fakeBuilder records what it was asked and plays back events.
type fakeBuilder struct {
	got     builder.Options
	context []byte
	secrets map[string]string
	fail    error
	pruned  builder.PruneOptions
}

func (f *fakeBuilder) Build(ctx context.Context, o builder.Options) (*builder.Result, error) {
	f.got = o
	f.context, _ = io.ReadAll(o.Context)
	for _, w := range o.Warnings {
		o.Progress(builder.Event{Kind: builder.EventInfo, Text: "[Warning] " + w})
	}
	f.secrets = map[string]string{}
	for k, v := range o.Secrets {
		f.secrets[k] = string(v)
	}
	o.Progress(builder.Event{Kind: builder.EventStep, Step: 1, Total: 2, Instruction: "FROM busybox"})
	o.Progress(builder.Event{Kind: builder.EventStepDone, ID: "sha256:0123456789abcdef0123"})
	o.Progress(builder.Event{Kind: builder.EventStep, Step: 2, Total: 2, Instruction: "RUN echo hi"})
	o.Progress(builder.Event{Kind: builder.EventRunning, ID: "fedcba9876543210fedcba"})
	o.Progress(builder.Event{Kind: builder.EventOutput, Text: "hi\n"})
	if f.fail != nil {
		return nil, f.fail
	}
	o.Progress(builder.Event{Kind: builder.EventCached})
	id := digest.FromString("image")
	return &builder.Result{Image: &imagestore.Image{ID: id}, Tags: []string{"docker.io/library/app:1", "example.com/x/app:v2"}}, nil
}

func (f *fakeBuilder) Prune(ctx context.Context, o builder.PruneOptions) (builder.Pruned, error) {
	f.pruned = o
	return builder.Pruned{Deleted: []string{"a", "b"}, Reclaimed: 42}, nil
}

func newBuildServer(t *testing.T, b Builder) *httptest.Server {
	srv := httptest.NewServer(NewHandler(dockerapitest.New(), Options{Builder: b}))
	t.Cleanup(srv.Close)
	return srv
}

func messages(t *testing.T, body string) []map[string]any {
	t.Helper()
	var out []map[string]any
	dec := json.NewDecoder(strings.NewReader(body))
	for dec.More() {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			t.Fatalf("decode %q: %v", body, err)
		}
		out = append(out, m)
	}
	return out
}

func TestBuildQueryAndStream(t *testing.T) {
	fb := &fakeBuilder{}
	srv := newBuildServer(t, fb)
	auth, _ := json.Marshal(map[string]any{"127.0.0.1:5000": map[string]string{"username": "u", "password": "p"}})
	q := url.Values{
		"t": {"app:1", "example.com/x/app:v2"}, "dockerfile": {".dockerfile.abc123"}, "target": {"final"},
		"buildargs": {`{"A":"1","B":null}`}, "labels": {`{"l":"v"}`}, "nocache": {"1"}, "pull": {"true"},
		"networkmode": {"none"}, "extrahosts": {"db:10.0.0.1"}, "shmsize": {"1048576"}, "memory": {"100000000"},
		"platform": {"linux/amd64"}, "rm": {"1"}, "forcerm": {"0"}, "cachefrom": {`["x"]`}, "version": {"1"},
	}
	resp, body := do(t, srv, http.MethodPost, "/v1.45/build?"+q.Encode(), strings.NewReader("tar bytes"),
		"Content-Type", "application/x-tar", "X-Registry-Config", base64.URLEncoding.EncodeToString(auth))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	o := fb.got
	if strings.Join(o.Tags, ",") != "app:1,example.com/x/app:v2" || o.Dockerfile != ".dockerfile.abc123" || o.Target != "final" ||
		*o.BuildArgs["A"] != "1" || o.BuildArgs["B"] != nil || o.Labels["l"] != "v" || !o.NoCache || !o.Pull ||
		o.Network != "none" || o.ExtraHosts[0] != "db:10.0.0.1" || o.ShmSize != 1<<20 || o.Resources.Memory != 1e8 ||
		o.Platform != "linux/amd64" || o.Auth["127.0.0.1:5000"].Username != "u" || string(fb.context) != "tar bytes" {
		t.Fatalf("options %+v", o)
	}
	var stream strings.Builder
	var aux string
	for _, m := range messages(t, body) {
		if s, ok := m["stream"].(string); ok {
			stream.WriteString(s)
		}
		if a, ok := m["aux"].(map[string]any); ok {
			aux, _ = a["ID"].(string)
		}
	}
	want := "[Warning] cache-from [x] is not used: Berth's build cache is keyed by content and kept by berthd, not taken from images\n" +
		"Step 1/2 : FROM busybox\n ---> 0123456789ab\nStep 2/2 : RUN echo hi\n ---> Running in fedcba987654\nhi\n ---> Using cache\n" +
		"Successfully built " + digest.FromString("image").Encoded()[:12] + "\nSuccessfully tagged app:1\nSuccessfully tagged example.com/x/app:v2\n"
	if stream.String() != want {
		t.Fatalf("stream:\n%s\nwant:\n%s", stream.String(), want)
	}
	if aux != digest.FromString("image").String() {
		t.Fatalf("aux ID %q", aux)
	}

	// q=1: the body is the ID alone, as one stream line.
	_, body = do(t, srv, http.MethodPost, "/build?q=1", strings.NewReader("x"))
	ms := messages(t, body)
	if len(ms) != 1 || ms[0]["stream"] != digest.FromString("image").String()+"\n" {
		t.Fatalf("q=1 body: %s", body)
	}

	// A failure after the stream started is an errorDetail.
	fb.fail = errors.New("Dockerfile:2: process \"/bin/sh -c false\" did not complete successfully: exit code: 1")
	resp, body = do(t, srv, http.MethodPost, "/build", strings.NewReader("x"))
	ms = messages(t, body)
	last := ms[len(ms)-1]
	detail, _ := last["errorDetail"].(map[string]any)
	if resp.StatusCode != 200 || detail["message"] != fb.fail.Error() || last["error"] != fb.fail.Error() {
		t.Fatalf("failure: %d %s", resp.StatusCode, body)
	}
}

func TestBuildRefusals(t *testing.T) {
	fb := &fakeBuilder{}
	srv := newBuildServer(t, fb)
	for q, status := range map[string]int{
		"squash=1":            http.StatusNotImplemented,
		"version=2":           http.StatusNotImplemented,
		"session=abc":         http.StatusNotImplemented,
		"remote=https://x/y":  http.StatusNotImplemented,
		"t=Bad:Name:x":        http.StatusBadRequest,
		"buildargs=notjson":   http.StatusBadRequest,
		"nocache=maybe":       http.StatusBadRequest,
		"memory=lots":         http.StatusBadRequest,
		"securityopt=seccomp": http.StatusNotImplemented,
	} {
		resp, body := do(t, srv, http.MethodPost, "/build?"+q, strings.NewReader("x"))
		if resp.StatusCode != status {
			t.Errorf("%s: status %d (%s), want %d", q, resp.StatusCode, body, status)
		}
	}
	nb := httptest.NewServer(NewHandler(dockerapitest.New(), Options{}))
	defer nb.Close()
	if resp, _ := do(t, nb, http.MethodPost, "/build", strings.NewReader("x")); resp.StatusCode != http.StatusNotImplemented {
		t.Errorf("no builder: %d", resp.StatusCode)
	}
}

// Berth's extension: secrets as multipart parts before the context.
func TestBuildMultipartSecrets(t *testing.T) {
	fb := &fakeBuilder{}
	srv := newBuildServer(t, fb)
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for id, v := range map[string]string{"token": "s3cr3t", "other": "v2"} {
		p, _ := mw.CreateFormFile(BuildSecretPart, id)
		io.WriteString(p, v)
	}
	p, _ := mw.CreateFormFile(BuildContextPart, "context.tar")
	io.WriteString(p, "the context")
	mw.Close()
	resp, body := do(t, srv, http.MethodPost, "/build?t=x", &buf, "Content-Type", mw.FormDataContentType())
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if fb.secrets["token"] != "s3cr3t" || fb.secrets["other"] != "v2" || string(fb.context) != "the context" {
		t.Fatalf("secrets %v context %q", fb.secrets, fb.context)
	}
	if strings.Contains(body, "s3cr3t") {
		t.Fatal("the secret came back in the response")
	}
	// Too big a secret, or no context part, is refused.
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	p, _ = mw.CreateFormFile(BuildSecretPart, "big")
	p.Write(bytes.Repeat([]byte("x"), MaxBuildSecret+1))
	mw.Close()
	if resp, body := do(t, srv, http.MethodPost, "/build", &buf, "Content-Type", mw.FormDataContentType()); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("big secret: %d %s", resp.StatusCode, body)
	}
}

func TestBuildPrune(t *testing.T) {
	fb := &fakeBuilder{}
	srv := newBuildServer(t, fb)
	resp, body := do(t, srv, http.MethodPost, "/build/prune?all=1&filters="+url.QueryEscape(`{"until":{"24h":true}}`), nil)
	var rep struct {
		CachesDeleted  []string
		SpaceReclaimed uint64
	}
	json.Unmarshal([]byte(body), &rep)
	if resp.StatusCode != 200 || len(rep.CachesDeleted) != 2 || rep.SpaceReclaimed != 42 || fb.pruned.Until.IsZero() {
		t.Fatalf("%d %s %+v", resp.StatusCode, body, fb.pruned)
	}
	if resp, _ := do(t, srv, http.MethodPost, "/build/prune?filters="+url.QueryEscape(`{"type":{"regular":true}}`), nil); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown filter: %d", resp.StatusCode)
	}
}
