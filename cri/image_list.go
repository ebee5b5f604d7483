package cri

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
)

// ListImages lists the images, or only the one the filter's image spec names
// (by name, ID or digest; an unknown name gives an empty list).
func (s *ImageService) ListImages(ctx context.Context, req *runtimeapi.ListImagesRequest) (*runtimeapi.ListImagesResponse, error) {
	imgs, err := s.listImages(ctx, req.GetFilter())
	if err != nil {
		return nil, err
	}
	return &runtimeapi.ListImagesResponse{Images: imgs}, nil
}

// StreamImages sends the same images as ListImages. One message is enough
// while a node's image list fits the 16 MiB message limit many times over.
func (s *ImageService) StreamImages(req *runtimeapi.StreamImagesRequest, stream runtimeapi.ImageService_StreamImagesServer) error {
	imgs, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	if len(imgs) == 0 {
		return nil
	}
	if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: imgs}); err != nil {
		return fmt.Errorf("stream images: %w", err)
	}
	return nil
}

func (s *ImageService) listImages(ctx context.Context, filter *runtimeapi.ImageFilter) ([]*runtimeapi.Image, error) {
	var stored []*imagestore.Image
	if name := filter.GetImage().GetImage(); name != "" {
		img, err := s.images.Get(ctx, name)
		switch {
		case errdefs.IsNotFound(err):
			return []*runtimeapi.Image{}, nil
		case err != nil:
			return nil, fmt.Errorf("list images named %q: %w", name, err)
		}
		stored = []*imagestore.Image{img}
	} else {
		var err error
		if stored, err = s.images.List(ctx); err != nil {
			return nil, fmt.Errorf("list images: %w", err)
		}
	}
	out := make([]*runtimeapi.Image, 0, len(stored))
	for _, img := range stored {
		out = append(out, toCRIImage(img))
	}
	return out, nil
}
