// Package cri serves the CRI v1 gRPC API (k8s.io/cri-api) over Berth's
// engine. It translates CRI requests into calls on the image store (and, in
// later issues, the runtime and networking) and back.
//
// Handlers return errors classified with containerd/errdefs; the one
// interceptor in interceptor.go turns the classes into gRPC codes, logs each
// RPC and recovers panics. Handlers never build status errors themselves.
package cri
