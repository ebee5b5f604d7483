package cri

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the store's usage as one image filesystem. Container
// filesystems stay empty until containers exist (they will live on the same
// filesystem, which CRI allows to be reported once).
func (s *ImageService) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.Usage(ctx)
	if err != nil {
		return nil, fmt.Errorf("image filesystem usage: %w", err)
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems: []*runtimeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: u.Bytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: u.Inodes},
		}},
	}, nil
}
