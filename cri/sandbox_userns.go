package cri

import (
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// podUserNamespace translates a pod's userns_options: NODE (or none) runs
// the pod in the host's user namespace, POD gives it one with the given
// mappings (the runtime checks their shape: one mapping of ID 0 each, as
// the kubelet sends), and CONTAINER and TARGET do not exist for user
// namespaces (api.proto). supported says whether the runtime can remap a
// rootfs here (Features.UserNamespaces).
func podUserNamespace(u *runtimeapi.UserNamespace, supported bool) (*runtime.UserNamespace, error) {
	if u == nil {
		// Not the zero mode: POD is 0.
		return nil, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return nil, fmt.Errorf("%w: user namespace mode NODE takes no mappings", errdefs.ErrInvalidArgument)
		}
		return nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, fmt.Errorf("%w: user namespace mode %v is not allowed for a pod (only NODE or POD)", errdefs.ErrInvalidArgument, u.GetMode())
	}
	if !supported {
		return nil, fmt.Errorf("%w: pod user namespaces need idmapped mounts, which this node lacks", errdefs.ErrNotImplemented)
	}
	if len(u.GetUids()) == 0 || len(u.GetGids()) == 0 {
		return nil, fmt.Errorf("%w: user namespace mode POD needs uid and gid mappings", errdefs.ErrInvalidArgument)
	}
	return &runtime.UserNamespace{UIDMappings: idMappings(u.GetUids()), GIDMappings: idMappings(u.GetGids())}, nil
}
