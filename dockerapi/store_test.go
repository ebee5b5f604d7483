package dockerapi

import (
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/moby/moby/client"

	"github.com/berth-dev/berth/imagestore"
)

// TestWithRealStore runs the API over the real image store and a registry
// on 127.0.0.1: load a docker-archive, tag it for the registry, push, remove,
// pull it back, inspect, save.
func TestWithRealStore(t *testing.T) {
	ctx := t.Context()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	regHost := strings.TrimPrefix(reg.URL, "http://")

	store, err := imagestore.Open(ctx, imagestore.Config{Root: t.TempDir(), RegistryConfigDir: t.TempDir(), DockerConfig: t.TempDir() + "/config.json"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	_, c := newTestServer(t, store)

	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	var tarBuf bytes.Buffer
	if err := tarball.Write(name.MustParseReference("berth.test/random:v1"), img, &tarBuf); err != nil {
		t.Fatal(err)
	}
	lr, err := c.ImageLoad(ctx, &tarBuf)
	if err != nil {
		t.Fatal(err)
	}
	loaded, _ := io.ReadAll(lr)
	lr.Close()
	if !strings.Contains(string(loaded), "Loaded image: berth.test/random:v1") {
		t.Fatalf("load said %s", loaded)
	}

	target := regHost + "/berth/random:v1"
	if _, err := c.ImageTag(ctx, client.ImageTagOptions{Source: "berth.test/random:v1", Target: target}); err != nil {
		t.Fatal(err)
	}
	push, err := c.ImagePush(ctx, target, client.ImagePushOptions{RegistryAuth: "e30="})
	if err != nil {
		t.Fatal(err)
	}
	for m, err := range push.JSONMessages(ctx) {
		if err != nil || m.Error != nil {
			t.Fatalf("push: %v %v", err, m.Error)
		}
	}
	push.Close()

	for _, ref := range []string{target, "berth.test/random:v1"} {
		if _, err := c.ImageRemove(ctx, ref, client.ImageRemoveOptions{}); err != nil {
			t.Fatalf("remove %s: %v", ref, err)
		}
	}
	if _, err := c.ImageInspect(ctx, cfgName.String()); !errdefs.IsNotFound(err) {
		t.Fatalf("inspect after remove: %v", err)
	}

	pull, err := c.ImagePull(ctx, target, client.ImagePullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for m, err := range pull.JSONMessages(ctx) {
		if err != nil || m.Error != nil {
			t.Fatalf("pull: %v %v", err, m.Error)
		}
		last = m.Status
	}
	pull.Close()
	if last != "Status: Downloaded newer image for "+target {
		t.Errorf("last pull status %q", last)
	}

	insp, err := c.ImageInspect(ctx, target)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if insp.ID != cfgName.String() || len(insp.RootFS.Layers) != 3 || insp.RootFS.Layers[0] != cf.RootFS.DiffIDs[0].String() ||
		len(insp.RepoTags) != 1 || insp.RepoTags[0] != target {
		t.Errorf("inspect after pull = %+v", insp.InspectResponse)
	}
	list, err := c.ImageList(ctx, client.ImageListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].ID != cfgName.String() {
		t.Errorf("list after pull = %+v %v", list.Items, err)
	}

	save, err := c.ImageSave(ctx, []string{target})
	if err != nil {
		t.Fatal(err)
	}
	saved, err := io.ReadAll(save)
	save.Close()
	if err != nil || !bytes.Contains(saved, []byte("manifest.json")) {
		t.Errorf("save: %d bytes, %v", len(saved), err)
	}
}
