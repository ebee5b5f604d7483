package imagestore

import (
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

func TestRemoveByOneOfThreeTagsKeepsImage(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 4096, 2)
	ref := reg.push(t, "test/img:v1", img)
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"a:1", "b"} {
		if err := s.Tag(ctx, ref, tag); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Get(ctx, "b:latest")
	if len(got.RepoTags) != 3 {
		t.Fatalf("tags: %v", got.RepoTags)
	}
	rm, err := s.Remove(ctx, "a:1", RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rm.Untagged, []string{"docker.io/library/a:1"}) || len(rm.Deleted) != 0 {
		t.Fatalf("remove a:1: %+v", rm)
	}
	if _, err := s.Get(ctx, "a:1"); !errdefs.IsNotFound(err) {
		t.Fatalf("removed tag still resolves: %v", err)
	}
	if _, err := s.Get(ctx, ref); err != nil {
		t.Fatalf("image went with one of its tags: %v", err)
	}
	if n := len(blobs(t, s)); n != 4 {
		t.Fatalf("blobs after untag: %d, want 4", n)
	}
	if _, err := s.Remove(ctx, "b", RemoveOptions{}); err != nil {
		t.Fatal(err)
	}
	rm, err = s.Remove(ctx, ref, RemoveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rm.Deleted, []digest.Digest{configDigest(t, img)}) || len(rm.Untagged) != 2 {
		t.Fatalf("remove last tag: %+v", rm)
	}
	if ids := listIDs(t, s); len(ids) != 0 {
		t.Fatalf("images left: %v", ids)
	}
	if b := blobs(t, s); len(b) != 0 || layerCount(t, s) != 0 {
		t.Fatalf("gc left blobs %v and %d layers", b, layerCount(t, s))
	}
	if _, err := s.Remove(ctx, ref, RemoveOptions{}); !errdefs.IsNotFound(err) {
		t.Fatalf("remove twice: %v", err)
	}
}

func TestRemoveByIDAndGCKeepsShared(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 4096, 2)
	ref := reg.push(t, "test/img:v1", img)
	ref2 := reg.push(t, "test/other:v1", randomImage(t, 4096, 1))
	s := openStore(t, Config{})
	ctx := t.Context()
	for _, r := range []string{ref, ref2} {
		if _, err := s.Pull(ctx, r, PullOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tag(ctx, ref, "elsewhere:1"); err != nil {
		t.Fatal(err)
	}
	id := configDigest(t, img)
	// Tags in two repositories: docker refuses removal by ID unless forced.
	if _, err := s.Remove(ctx, id.Encoded()[:12], RemoveOptions{}); !errdefs.IsConflict(err) {
		t.Fatalf("remove by ID of a multi-repo image: %v", err)
	}
	rm, err := s.Remove(ctx, id.Encoded()[:12], RemoveOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rm.Deleted) != 1 || len(rm.Untagged) != 3 {
		t.Fatalf("forced remove: %+v", rm)
	}
	// The other image's blobs and layer survive GC.
	other, err := s.Get(ctx, ref2)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(blobs(t, s)); n != 3 || layerCount(t, s) != 1 {
		t.Fatalf("after gc: %d blobs, %d layers; want 3 and 1", n, layerCount(t, s))
	}
	if _, err := s.content.Info(other.Layers[0].Digest); err != nil {
		t.Fatal(err)
	}
}

func TestRemoveByRepoDigest(t *testing.T) {
	reg := newRegistry(t)
	img := randomImage(t, 1024, 1)
	reg.push(t, "test/img:v1", img)
	s := openStore(t, Config{})
	ref := reg.host + "/test/img@" + manifestDigest(t, img).String()
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	rm, err := s.Remove(t.Context(), ref, RemoveOptions{})
	if err != nil || len(rm.Deleted) != 1 {
		t.Fatalf("remove by name@digest: %+v %v", rm, err)
	}
}

func TestTagMoves(t *testing.T) {
	reg := newRegistry(t)
	a, b := reg.push(t, "test/a:v1", randomImage(t, 1024, 1)), reg.push(t, "test/b:v1", randomImage(t, 1024, 1))
	s := openStore(t, Config{})
	ctx := t.Context()
	for _, r := range []string{a, b} {
		if _, err := s.Pull(ctx, r, PullOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Tag(ctx, a, "moving"); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, b, "moving:latest"); err != nil {
		t.Fatal(err)
	}
	ia, _ := s.Get(ctx, a)
	ib, _ := s.Get(ctx, "moving")
	if ib.ID == ia.ID || len(ia.RepoTags) != 1 || len(ib.RepoTags) != 2 {
		t.Fatalf("tag did not move: a=%v b=%v", ia.RepoTags, ib.RepoTags)
	}
	if err := s.Tag(ctx, a, "x@sha256:"+ia.ID.Encoded()); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("tag with digest: %v", err)
	}
	if err := s.Tag(ctx, "nope", "x"); !errdefs.IsNotFound(err) {
		t.Fatalf("tag unknown: %v", err)
	}
}

func TestUsageMatchesWalk(t *testing.T) {
	reg := newRegistry(t)
	ref := reg.push(t, "test/img:v1", randomImage(t, 64<<10, 2))
	s := openStore(t, Config{})
	before, err := s.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(t.Context(), ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	after, err := s.Usage(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if after.Bytes < before.Bytes+2*64<<10 || after.Inodes <= before.Inodes || after.Mountpoint == "" {
		t.Fatalf("usage before %+v after %+v", before, after)
	}
	du := duRoot(t, s.cfg.Root)
	if du.Bytes != after.Bytes || du.Inodes != after.Inodes {
		t.Fatalf("usage %+v, du says %+v", after, du)
	}
}
