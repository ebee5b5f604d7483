package testimage

import (
	"testing"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-dev/berth/internal/testutil"
)

// Require builds an image with build (Busybox, NonRoot, ...) or stops the
// test: a host without busybox lacks a prerequisite (testutil.Missing:
// a skip on a developer's machine, a failure under CI), and any other
// error fails the test.
func Require(t testing.TB, build func() (v1.Image, error)) v1.Image {
	t.Helper()
	img, err := build()
	switch {
	case errdefs.IsNotFound(err):
		testutil.Missing(t, "no test image (apt-get install busybox-static): %v", err)
	case err != nil:
		t.Fatalf("build test image: %v", err)
	}
	return img
}
