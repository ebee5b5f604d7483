package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// PodSandboxStatus reports the pod's state, IPs, namespaces and metadata,
// with the statuses of its containers (for the evented PLEG) and, when
// verbose, an "info" JSON with the runtime's details.
func (s *RuntimeService) PodSandboxStatus(ctx context.Context, req *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	sb, err := s.opts.Pods.Sandbox(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("pod sandbox status %s: %w", req.GetPodSandboxId(), err)
	}
	st, err := sandboxStatus(sb)
	if err != nil {
		return nil, fmt.Errorf("pod sandbox status %s: %w", sb.ID, err)
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st, Timestamp: time.Now().UnixNano()}
	if resp.ContainersStatuses, err = s.podContainerStatuses(ctx, sb.ID); err != nil {
		return nil, fmt.Errorf("pod sandbox status %s: %w", sb.ID, err)
	}
	if req.GetVerbose() {
		info, err := json.Marshal(sandboxInfo{
			Pid:            sb.PausePid,
			NetNSPath:      sb.NetNSPath,
			IPCNSPath:      sb.IPCNSPath,
			UTSNSPath:      sb.UTSNSPath,
			IPs:            sb.IPs,
			HostsPath:      sb.HostsPath,
			ResolvConfPath: sb.ResolvConfPath,
			HostnamePath:   sb.HostnamePath,
			ShmPath:        sb.ShmPath,
			CgroupParent:   sb.Config.CgroupParent,
			RuntimeHandler: sb.Config.RuntimeHandler,
		})
		if err != nil {
			return nil, fmt.Errorf("pod sandbox status %s: encode info: %w", sb.ID, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// sandboxInfo is the verbose "info" of PodSandboxStatus.
type sandboxInfo struct {
	Pid            int      `json:"pid"`
	NetNSPath      string   `json:"netNamespacePath,omitempty"`
	IPCNSPath      string   `json:"ipcNamespacePath,omitempty"`
	UTSNSPath      string   `json:"utsNamespacePath,omitempty"`
	IPs            []string `json:"ips,omitempty"`
	HostsPath      string   `json:"hostsPath,omitempty"`
	ResolvConfPath string   `json:"resolvConfPath,omitempty"`
	HostnamePath   string   `json:"hostnamePath,omitempty"`
	ShmPath        string   `json:"shmPath,omitempty"`
	CgroupParent   string   `json:"cgroupParent,omitempty"`
	RuntimeHandler string   `json:"runtimeHandler"`
}

// sandboxStatus converts a runtime sandbox to its CRI status.
func sandboxStatus(sb *runtime.Sandbox) (*runtimeapi.PodSandboxStatus, error) {
	var cfg runtimeapi.PodSandboxConfig
	if err := readRecord(sb.Config.Annotations, annPodConfig, &cfg); err != nil {
		return nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:       sb.ID,
		Metadata: sandboxMetadata(sb),
		State:    sandboxState(sb.State),
		// A pod that never got a network reports no IP, not an error.
		Network:        &runtimeapi.PodSandboxNetworkStatus{},
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         nonNilMap(sb.Config.Labels),
		Annotations:    visibleAnnotations(sb.Config.Annotations),
		RuntimeHandler: sb.Config.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network:       criNamespaceMode(sb.Config.Namespaces.Network),
			Pid:           criNamespaceMode(sb.Config.Namespaces.PID),
			Ipc:           criNamespaceMode(sb.Config.Namespaces.IPC),
			UsernsOptions: cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetUsernsOptions(),
		}}},
	}
	if len(sb.IPs) > 0 {
		st.Network.Ip = sb.IPs[0]
		for _, ip := range sb.IPs[1:] {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	return st, nil
}

func sandboxMetadata(sb *runtime.Sandbox) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{Name: sb.Config.Name, Namespace: sb.Config.Namespace, Uid: sb.Config.UID, Attempt: sb.Config.Attempt}
}

func sandboxState(st runtime.SandboxState) runtimeapi.PodSandboxState {
	if st == runtime.SandboxReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}

func criNamespaceMode(m runtime.NamespaceMode) runtimeapi.NamespaceMode {
	switch m {
	case runtime.NamespaceContainer:
		return runtimeapi.NamespaceMode_CONTAINER
	case runtime.NamespaceNode:
		return runtimeapi.NamespaceMode_NODE
	case runtime.NamespaceTarget:
		return runtimeapi.NamespaceMode_TARGET
	}
	return runtimeapi.NamespaceMode_POD
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

// podContainerStatuses are the statuses of the pod's containers, newest
// first. With EventedPLEG the kubelet takes them as the pod's container
// statuses as they come, without sorting, and treats the first one of a
// name as that container's latest: oldest first, it restarted a container
// it had just restarted, under the attempt number of the one running, and
// kept failing with "name taken".
func (s *RuntimeService) podContainerStatuses(ctx context.Context, sandboxID string) ([]*runtimeapi.ContainerStatus, error) {
	var cs []*runtime.Container
	for _, c := range s.opts.Containers.ListContainers() {
		if c.SandboxID == sandboxID {
			cs = append(cs, c)
		}
	}
	slices.SortStableFunc(cs, func(a, b *runtime.Container) int { return b.CreatedAt.Compare(a.CreatedAt) })
	out := make([]*runtimeapi.ContainerStatus, 0, len(cs))
	for _, c := range cs {
		st, err := s.containerStatus(ctx, c)
		if err != nil {
			return nil, err
		}
		out = append(out, st)
	}
	return out, nil
}
