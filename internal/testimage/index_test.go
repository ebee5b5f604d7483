package testimage

import (
	"io"
	"log"
	"net/http/httptest"
	"net/url"
	goruntime "runtime"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"
)

func TestIndexResolvesToPlatform(t *testing.T) {
	bb, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	// A foreign platform first, so that picking the first entry is wrong.
	foreign := v1.Platform{OS: "linux", Architecture: "s390x"}
	if goruntime.GOARCH == "s390x" {
		foreign.Architecture = "riscv64"
	}
	other, err := ForPlatform(bb, foreign)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := Index(other, bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := validate.Index(idx); err != nil {
		t.Fatalf("invalid index: %v", err)
	}

	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	ref := u.Host + "/berth/multi:latest"
	if err := PushIndex(t.Context(), idx, ref); err != nil {
		t.Fatal(err)
	}
	r, _ := name.ParseReference(ref)
	got, err := remote.Image(r, remote.WithContext(t.Context()),
		remote.WithPlatform(v1.Platform{OS: "linux", Architecture: goruntime.GOARCH}))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := bb.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("resolved %s for the host platform, want busybox %s", d, want)
	}
	od, _ := other.Digest()
	if od == want {
		t.Error("the foreign-platform image has the same digest as the host's")
	}
}
