package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
)

// RemoveImage removes what the spec names. Named by tag, only that tag goes
// while the image has other names; named by ID or digest, the image goes
// with all its names (Force: CRI has no notion of refusing that). A missing
// image is success: CRI removals are idempotent.
func (s *ImageService) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	name, err := imageName("remove image", req.GetImage())
	if err != nil {
		return nil, err
	}
	_, err = s.images.Remove(ctx, name, imagestore.RemoveOptions{Force: true})
	if err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("remove image %q: %w", name, err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
