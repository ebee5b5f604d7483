package cri

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	// kubeletAPIVersion is the value every CRI runtime reports as Version.
	kubeletAPIVersion = "0.1.0"
	runtimeName       = "berth"
	runtimeAPIVersion = "v1"
)

// Version reports the runtime's name and versions.
func (s *RuntimeService) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeletAPIVersion,
		RuntimeName:       runtimeName,
		RuntimeVersion:    s.opts.Version,
		RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}
