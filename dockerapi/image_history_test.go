package dockerapi

import (
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/client"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/imagestore"
)

func TestImageHistory(t *testing.T) {
	f := dockerapitest.New()
	built := dockerapitest.Image("built", "app:v1")
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(d time.Duration) *time.Time { x := t0.Add(d); return &x }
	built.Layers = []imagestore.Layer{
		{Digest: digest.FromString("l1"), UnpackedSize: 4_000_000},
		{Digest: digest.FromString("l2"), UnpackedSize: 12},
	}
	built.Config.History = []ocispec.History{
		{Created: at(0), CreatedBy: "ADD rootfs.tar /", Comment: "base"},
		{Created: at(time.Minute), CreatedBy: "ENV A=1", EmptyLayer: true},
		{Created: at(2 * time.Minute), CreatedBy: "RUN echo hi > /hi"},
	}
	// Assembled by a tool: layers, no history.
	bare := dockerapitest.Image("bare")
	bare.Layers[0].UnpackedSize = 77
	f.Add(built)
	f.Add(bare)
	_, c := newTestServer(t, f)

	res, err := c.ImageHistory(t.Context(), "app:v1")
	if err != nil {
		t.Fatal(err)
	}
	h := res.Items
	if len(h) != 3 {
		t.Fatalf("history = %+v", h)
	}
	if h[0].ID != built.ID.String() || len(h[0].Tags) != 1 || h[0].Tags[0] != "app:v1" || h[0].CreatedBy != "RUN echo hi > /hi" ||
		h[0].Size != 12 || h[0].Created != at(2*time.Minute).Unix() {
		t.Errorf("newest step = %+v", h[0])
	}
	if h[1].ID != "<missing>" || h[1].CreatedBy != "ENV A=1" || h[1].Size != 0 {
		t.Errorf("empty-layer step = %+v", h[1])
	}
	if h[2].ID != "<missing>" || h[2].Size != 4_000_000 || h[2].Comment != "base" || h[2].Created != t0.Unix() {
		t.Errorf("first step = %+v", h[2])
	}

	res, err = c.ImageHistory(t.Context(), bare.ID.Encoded()[:12])
	if err != nil {
		t.Fatal(err)
	}
	if h := res.Items; len(h) != 1 || h[0].ID != bare.ID.String() || h[0].Size != 77 || h[0].Created != bare.Config.Created.Unix() {
		t.Errorf("history without config history = %+v", h)
	}
	if _, err := c.ImageHistory(t.Context(), "nosuch"); !errdefs.IsNotFound(err) {
		t.Errorf("history of a missing image: %v", err)
	}
}

func TestListManifests(t *testing.T) {
	f := dockerapitest.New()
	a := dockerapitest.Image("a", "busybox:latest")
	f.Add(a)
	_, c := newTestServer(t, f)
	res, err := c.ImageList(t.Context(), client.ImageListOptions{})
	if err != nil || len(res.Items) != 1 || res.Items[0].Manifests != nil {
		t.Fatalf("list without manifests = %+v, %v", res.Items, err)
	}
	res, err = c.ImageList(t.Context(), client.ImageListOptions{Manifests: true})
	if err != nil || len(res.Items) != 1 || len(res.Items[0].Manifests) != 1 {
		t.Fatalf("list with manifests = %+v, %v", res.Items, err)
	}
	m := res.Items[0].Manifests[0]
	if m.ID != a.ManifestDigest.String() || m.Descriptor.Digest != a.ManifestDigest || !m.Available || m.Kind != "image" ||
		m.Size.Content != a.Size || m.Size.Total != a.Size+a.UnpackedSize || m.ImageData == nil ||
		m.ImageData.Platform.OS != "linux" || m.ImageData.Platform.Architecture != "amd64" || m.ImageData.Size.Unpacked != a.UnpackedSize {
		t.Errorf("manifest summary = %+v (image data %+v)", m, m.ImageData)
	}
}
