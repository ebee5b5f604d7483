package cri

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
)

// imageStore is what the ImageService needs of imagestore.Store.
type imageStore interface {
	Pull(ctx context.Context, ref string, opts imagestore.PullOptions) (*imagestore.Image, error)
	Get(ctx context.Context, nameOrID string) (*imagestore.Image, error)
	List(ctx context.Context) ([]*imagestore.Image, error)
	Remove(ctx context.Context, nameOrID string, opts imagestore.RemoveOptions) (imagestore.Removed, error)
	Usage(ctx context.Context) (imagestore.Usage, error)
}

// ImageService implements runtimeapi.ImageServiceServer on an image store.
type ImageService struct {
	runtimeapi.UnimplementedImageServiceServer
	images imageStore
}

var _ runtimeapi.ImageServiceServer = (*ImageService)(nil)

// NewImageService returns the CRI ImageService over images (an
// *imagestore.Store in berthd).
func NewImageService(images imageStore) *ImageService {
	return &ImageService{images: images}
}

// imageName returns the image named by spec, or an InvalidArgument error
// saying what was being done.
func imageName(op string, spec *runtimeapi.ImageSpec) (string, error) {
	name := strings.TrimSpace(spec.GetImage())
	if name == "" {
		return "", fmt.Errorf("%s: %w: image spec names no image", op, errdefs.ErrInvalidArgument)
	}
	return name, nil
}

// toCRIImage converts a stored image to its CRI form.
func toCRIImage(img *imagestore.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID.String(),
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        uint64(max(img.Size, 0)),
		Spec:        &runtimeapi.ImageSpec{Image: img.ID.String()},
		Pinned:      img.Pinned,
	}
	uid, username := userFromConfig(img.Config.Config.User)
	if uid != nil {
		out.Uid = &runtimeapi.Int64Value{Value: *uid}
	}
	out.Username = username
	return out
}

// userFromConfig splits an image config USER ("name", "uid", "uid:gid",
// "name:group") the way containerd does: a numeric user is a UID, anything
// else a user name; the group does not matter to CRI.
func userFromConfig(user string) (*int64, string) {
	user, _, _ = strings.Cut(user, ":")
	if user == "" {
		return nil, ""
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil && uid >= 0 {
		return &uid, ""
	}
	return nil, user
}
