package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
)

// RemoveImage removes the image the spec names, with all its names, whether
// it is named by ID, digest or one of several tags: that is the CRI
// semantic (containerd removes every reference; critest's "removing image
// by one tag should remove all tags" checks it). A missing image is
// success: CRI removals are idempotent.
func (s *ImageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name, err := imageName("remove image", req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(ctx, name)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveImageResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove image %q: %w", name, err)
	}
	_, err = s.images.Remove(ctx, img.ID.String(), imagestore.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("remove image %q: %w", name, err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
