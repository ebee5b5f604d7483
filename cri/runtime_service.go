package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RuntimeService implements the CRI RuntimeService. Only Version and Status
// exist so far; pods and containers arrive with the runtime, and until then
// the embedded UnimplementedRuntimeServiceServer answers Unimplemented.
type RuntimeService struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	opts RuntimeOptions
}

// RuntimeOptions configure the RuntimeService.
type RuntimeOptions struct {
	// Version is Berth's version, reported as runtime_version.
	Version string
	// Config is reported as JSON under "config" by a verbose Status.
	Config any
}

var _ runtimeapi.RuntimeServiceServer = (*RuntimeService)(nil)

// NewRuntimeService returns the CRI RuntimeService.
func NewRuntimeService(opts RuntimeOptions) *RuntimeService {
	return &RuntimeService{opts: opts}
}
