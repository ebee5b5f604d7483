// Package cri serves the CRI v1 gRPC API (k8s.io/cri-api) for the kubelet
// and crictl: the ImageService over the image store, and the
// RuntimeService over the runtime's "cri"-owned sandboxes and containers,
// the pod network (CNI, through the Network it is given), rootfs snapshots
// and the CRI streaming server (exec, attach, port-forward). NRI plugins
// observe its pods and containers and adjust containers (nri.go).
//
// The CRI configs the kubelet sent are kept in a reserved annotation of the
// runtime's records (runtime_record.go); everything else is the runtime's.
//
// Handlers return errors classified with containerd/errdefs; the one
// interceptor in interceptor.go turns the classes into gRPC codes, logs each
// RPC and recovers panics. Handlers never build status errors themselves.
package cri
