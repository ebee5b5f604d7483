package cri

import (
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// The runtime records plain values only, yet PodSandboxStatus,
// ContainerStatus and a second CNI DEL after a restart need the CRI configs
// as the kubelet sent them (port mappings, mounts, security context). They
// are kept, as JSON, in a reserved annotation of the runtime's record, which
// the runtime persists atomically with the rest; the annotation is hidden
// from CRI clients.
const (
	annPodConfig       = "io.berth.cri.pod-config"
	annContainerConfig = "io.berth.cri.container-config"
)

// withRecord returns a copy of annotations with msg stored under key.
func withRecord(annotations map[string]string, key string, msg proto.Message) (map[string]string, error) {
	b, err := protojson.Marshal(msg)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w: %w", key, errdefs.ErrInternal, err)
	}
	out := maps.Clone(annotations)
	if out == nil {
		out = map[string]string{}
	}
	out[key] = string(b)
	return out, nil
}

// readRecord decodes the config stored under key into msg; a record
// without it (made by another front end) leaves msg empty.
func readRecord(annotations map[string]string, key string, msg proto.Message) error {
	s, ok := annotations[key]
	if !ok {
		return nil
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(s), msg); err != nil {
		return fmt.Errorf("decode %s: %w: %w", key, errdefs.ErrDataLoss, err)
	}
	return nil
}

// visibleAnnotations drops Berth's reserved annotations.
func visibleAnnotations(annotations map[string]string) map[string]string {
	out := maps.Clone(annotations)
	delete(out, annPodConfig)
	delete(out, annContainerConfig)
	if out == nil {
		out = map[string]string{}
	}
	return out
}
