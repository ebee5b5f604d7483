package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
)

// PullImage pulls the image and returns its ID (the config digest), the
// same value ListImages and ImageStatus report as Image.id. The sandbox
// config is ignored: pulls do not depend on the pod.
func (s *ImageService) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref, err := imageName("pull image", req.GetImage())
	if err != nil {
		return nil, err
	}
	// CRI asks runtimes to reject handlers they do not know; berth has only
	// the default one so far.
	if h := req.GetImage().GetRuntimeHandler(); h != "" {
		return nil, fmt.Errorf("pull image %q: %w: unknown runtime handler %q", ref, errdefs.ErrInvalidArgument, h)
	}
	img, err := s.images.Pull(ctx, ref, imagestore.PullOptions{Auth: toAuth(req.GetAuth())})
	if err != nil {
		// The store's error already says "pull <ref>" and where it failed.
		return nil, err
	}
	loggerFrom(ctx).InfoContext(ctx, "image pulled", "ref", ref, "id", img.ID)
	return &runtimeapi.PullImageResponse{ImageRef: img.ID.String()}, nil
}

// toAuth converts CRI credentials; nil (or all empty) lets the store fall
// back to the docker config file.
func toAuth(a *runtimeapi.AuthConfig) *imagestore.Auth {
	if a == nil {
		return nil
	}
	auth := &imagestore.Auth{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
	if *auth == (imagestore.Auth{}) {
		return nil
	}
	return auth
}
