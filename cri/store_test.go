package cri

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/testimage"
)

// TestRealStore drives the ImageService over a real imagestore.Store that
// pulls from an in-process registry on 127.0.0.1.
func TestRealStore(t *testing.T) {
	ctx := t.Context()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	img := testimage.Require(t, testimage.NonRoot)
	for _, tag := range []string{"a", "b"} {
		if err := testimage.Push(ctx, img, host+"/berth/nonroot:"+tag); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	store, err := imagestore.Open(ctx, imagestore.Config{
		Root:                   filepath.Join(dir, "root"),
		RegistryConfigDir:      filepath.Join(dir, "certs.d"),
		DockerConfig:           filepath.Join(dir, "config.json"),
		StallTimeout:           30e9,
		MaxConcurrentDownloads: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	c, _ := serve(t, store)
	spec := func(s string) *runtimeapi.ImageSpec { return &runtimeapi.ImageSpec{Image: s} }

	pa, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(host + "/berth/nonroot:a")})
	if err != nil {
		t.Fatal(err)
	}
	pb, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(host + "/berth/nonroot:b")})
	if err != nil {
		t.Fatal(err)
	}
	cfgDigest, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	if pa.ImageRef != cfgDigest.String() || pb.ImageRef != pa.ImageRef {
		t.Fatalf("image_ref = %s and %s, want the config digest %s", pa.ImageRef, pb.ImageRef, cfgDigest)
	}

	st, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(pa.ImageRef), Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	got := st.Image
	slices.Sort(got.RepoTags)
	manifest, _ := img.Digest()
	if got.Id != pa.ImageRef ||
		!slices.Equal(got.RepoTags, []string{host + "/berth/nonroot:a", host + "/berth/nonroot:b"}) ||
		!slices.Contains(got.RepoDigests, host+"/berth/nonroot@"+manifest.String()) ||
		got.GetUid().GetValue() != testimage.NonRootUID || got.Username != "" || got.Size == 0 {
		t.Errorf("status = %v", got)
	}
	if !strings.Contains(st.Info["info"], `"imageSpec"`) {
		t.Errorf("verbose info = %q", st.Info["info"])
	}

	if _, err := c.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(host + "/berth/nonroot:a")}); err != nil {
		t.Fatal(err)
	}
	// One tag of two names the whole image: both tags go (CRI semantics).
	st, err = c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec(host + "/berth/nonroot:b")})
	if err != nil || st.Image != nil {
		t.Fatalf("after removing tag a: %v, %v; want the image gone with tag b too", st.GetImage(), err)
	}
	if _, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(host + "/berth/nonroot:b")}); err != nil {
		t.Fatal(err)
	}
	// By ID while tags in two repositories name it (docker would want
	// --force): the image goes with both.
	if err := testimage.Push(ctx, img, host+"/berth/other:c"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.images.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec(host + "/berth/other:c")}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(pa.ImageRef)}); err != nil {
		t.Fatalf("remove by ID with tags in two repositories: %v", err)
	}
	list, err := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Fatalf("list after removing by ID = %v, %v; want empty", list, err)
	}
	if _, err := c.images.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec(pa.ImageRef)}); err != nil {
		t.Fatalf("removing a removed image: %v", err)
	}
}
