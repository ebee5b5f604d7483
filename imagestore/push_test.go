package imagestore

import (
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
)

func TestPushThenPullBack(t *testing.T) {
	src := newRegistry(t)
	dst := newRegistry(t)
	img := randomImage(t, 32<<10, 2)
	ref := src.push(t, "test/img:v1", img)
	s := openStore(t, Config{})
	ctx := t.Context()
	if _, err := s.Pull(ctx, ref, PullOptions{}); err != nil {
		t.Fatal(err)
	}
	target := dst.host + "/copied/img:v2"
	if err := s.Tag(ctx, ref, target); err != nil {
		t.Fatal(err)
	}
	var pushed int
	if err := s.Push(ctx, target, PushOptions{Progress: func(p Progress) {
		if p.Status == "Pushed" {
			pushed++
		}
	}}); err != nil {
		t.Fatal(err)
	}
	if pushed != 2 {
		t.Fatalf("pushed progress for %d layers", pushed)
	}
	// What the registry holds is the very manifest we pulled.
	r, err := name.ParseReference(target)
	if err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Get(r)
	if err != nil {
		t.Fatal(err)
	}
	if digest.Digest(desc.Digest.String()) != manifestDigest(t, img) {
		t.Fatalf("pushed manifest %s, pulled %s", desc.Digest, manifestDigest(t, img))
	}
	fresh := openStore(t, Config{})
	got, err := fresh.Pull(ctx, target, PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != configDigest(t, img) {
		t.Fatalf("pulled back %s", got.ID)
	}
}
