package cri

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// verboseImageInfo is the JSON under the "info" key of a verbose
// ImageStatus, shaped like containerd's so tools that read it keep working.
type verboseImageInfo struct {
	ChainID        digest.Digest `json:"chainID,omitempty"`
	ManifestDigest digest.Digest `json:"manifestDigest,omitempty"`
	MediaType      string        `json:"mediaType,omitempty"`
	UnpackedSize   int64         `json:"unpackedSize"`
	ImageSpec      ocispec.Image `json:"imageSpec"`
}

// ImageStatus returns the image the spec names. An unknown image is an empty
// response (Image nil), not an error: the kubelet asks before pulling.
func (s *ImageService) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	name, err := imageName("image status", req.GetImage())
	if err != nil {
		return nil, err
	}
	img, err := s.images.Get(ctx, name)
	switch {
	case errdefs.IsNotFound(err):
		return &runtimeapi.ImageStatusResponse{}, nil
	case err != nil:
		return nil, fmt.Errorf("image status %q: %w", name, err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if !req.GetVerbose() {
		return resp, nil
	}
	info := verboseImageInfo{
		ManifestDigest: img.ManifestDigest,
		MediaType:      img.ManifestMediaType,
		UnpackedSize:   img.UnpackedSize,
		ImageSpec:      img.Config,
	}
	if n := len(img.Layers); n > 0 {
		info.ChainID = img.Layers[n-1].ChainID
	}
	b, err := json.Marshal(info)
	if err != nil {
		return nil, fmt.Errorf("image status %q: encode verbose info: %w", name, err)
	}
	resp.Info = map[string]string{"info": string(b)}
	return resp, nil
}
