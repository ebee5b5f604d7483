package cri

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

// RunPodSandbox creates the pod's namespaces and files (runtime), attaches
// its network namespace (CNI ADD with the pod's port mappings) and records
// its IPs. The runtime runs the CNI ADD as soon as the namespace is pinned,
// while it makes the rest of the pod: the ADD is most of a pod's start. On
// any failure everything made so far is undone in reverse order, so a
// failed call leaks no IP, netns or mount.
func (s *RuntimeService) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (_ *runtimeapi.RunPodSandboxResponse, retErr error) {
	cfg := req.GetConfig()
	sc, err := sandboxConfig(cfg, req.GetRuntimeHandler(), s.opts.Features)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	sc.ID = newID()
	// The pod's lock is held until any undo has run: a stop or remove of
	// this pod (a kubelet giving up) waits instead of racing the CNI ADD.
	unlock := s.pods.lock(sc.ID)
	var undo cleanups
	defer func() {
		undo.run(ctx, &retErr)
		unlock()
	}()
	var att *podAttacher
	if s.opts.Network != nil && sc.Namespaces.Network == runtime.NamespacePod {
		att = &podAttacher{net: s.opts.Network, id: sc.ID, cfg: cfg}
		sc.Network = att
	}
	// NRI plugins see the pod once it is made and before anyone else can
	// (PodSandboxStatus, ListPodSandbox, a container joining it); one may
	// refuse it. Plugins connecting meanwhile wait until it is listed.
	var admitted *runtime.Sandbox
	if s.nri != nil {
		var unblock func()
		defer func() {
			if unblock != nil {
				unblock()
			}
		}()
		sc.Admit = func(ctx context.Context, sb *runtime.Sandbox) error {
			unblock = s.nri.blockSync()
			if err := s.nri.runPodSandbox(ctx, sb); err != nil {
				return err
			}
			admitted = sb
			return nil
		}
	}
	sb, err := s.opts.Pods.CreateSandbox(ctx, sc)
	if err != nil {
		if admitted != nil {
			s.nri.removePodSandbox(context.WithoutCancel(ctx), admitted)
		}
		return nil, fmt.Errorf("run pod sandbox %s/%s: %w", sc.Namespace, sc.Name, err)
	}
	undo.push(func(ctx context.Context) error { return s.opts.Pods.RemoveSandbox(ctx, sb.ID) })
	undo.push(func(ctx context.Context) error {
		s.nri.removePodSandbox(ctx, sb)
		return nil
	})

	if sb.NetNSPath != "" && s.opts.Network != nil && (att == nil || !att.called) {
		// A runtime that did not attach the pod itself.
		pn := podNetwork(sb.ID, sb.NetNSPath, cfg)
		ips, err := s.opts.Network.Attach(ctx, pn)
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox %s: attach network: %w", sb.ID, err)
		}
		undo.push(func(ctx context.Context) error { return s.opts.Network.Detach(ctx, pn) })
		if err := s.opts.Pods.SetSandboxNetwork(ctx, sb.ID, ips); err != nil {
			return nil, fmt.Errorf("run pod sandbox %s: record network: %w", sb.ID, err)
		}
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

// podAttacher is the runtime's hook to the pod's CNI ADD and DEL
// (runtime.SandboxNetwork).
type podAttacher struct {
	net Network
	id  string
	cfg *runtimeapi.PodSandboxConfig
	// called is set by Attach; read after CreateSandbox returned.
	called bool
}

func (a *podAttacher) Attach(ctx context.Context, netns string) ([]string, error) {
	a.called = true
	return a.net.Attach(ctx, podNetwork(a.id, netns, a.cfg))
}

func (a *podAttacher) Detach(ctx context.Context, netns string) error {
	return a.net.Detach(ctx, podNetwork(a.id, netns, a.cfg))
}

// sandboxConfig translates the CRI pod config into the runtime's.
func sandboxConfig(cfg *runtimeapi.PodSandboxConfig, handler string, features Features) (runtime.SandboxConfig, error) {
	md := cfg.GetMetadata()
	if md.GetName() == "" || md.GetNamespace() == "" || md.GetUid() == "" {
		return runtime.SandboxConfig{}, fmt.Errorf("%w: pod metadata needs a name, a namespace and a uid", errdefs.ErrInvalidArgument)
	}
	lnx := cfg.GetLinux()
	nsOpts := lnx.GetSecurityContext().GetNamespaceOptions()
	sc := runtime.SandboxConfig{
		Name:           md.GetName(),
		Namespace:      md.GetNamespace(),
		UID:            md.GetUid(),
		Attempt:        md.GetAttempt(),
		Hostname:       cfg.GetHostname(),
		LogDirectory:   cfg.GetLogDirectory(),
		Labels:         cfg.GetLabels(),
		CgroupParent:   lnx.GetCgroupParent(),
		Sysctls:        lnx.GetSysctls(),
		Privileged:     lnx.GetSecurityContext().GetPrivileged(),
		RuntimeHandler: handler,
	}
	var err error
	if sc.Namespaces.Network, err = namespaceMode("network", nsOpts.GetNetwork(), runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE); err != nil {
		return runtime.SandboxConfig{}, err
	}
	if sc.Namespaces.IPC, err = namespaceMode("ipc", nsOpts.GetIpc(), runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_NODE); err != nil {
		return runtime.SandboxConfig{}, err
	}
	if sc.Namespaces.PID, err = namespaceMode("pid", nsOpts.GetPid(), runtimeapi.NamespaceMode_POD, runtimeapi.NamespaceMode_CONTAINER, runtimeapi.NamespaceMode_NODE); err != nil {
		return runtime.SandboxConfig{}, err
	}
	if sc.Hostname == "" {
		// containerd gives a pod without a hostname the node's: the pod
		// name may be longer than a hostname can be (64 bytes).
		h, err := os.Hostname()
		if err != nil {
			return runtime.SandboxConfig{}, fmt.Errorf("read the node's hostname: %w", err)
		}
		sc.Hostname = h
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		sc.DNS = &runtime.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	if sc.UserNS, err = podUserNamespace(nsOpts.GetUsernsOptions(), features.UserNamespaces); err != nil {
		return runtime.SandboxConfig{}, err
	}
	if sc.Annotations, err = withRecord(cfg.GetAnnotations(), annPodConfig, cfg); err != nil {
		return runtime.SandboxConfig{}, err
	}
	return sc, nil
}

// namespaceMode converts a CRI namespace mode, refusing the ones a pod-level
// namespace cannot have.
func namespaceMode(what string, m runtimeapi.NamespaceMode, allowed ...runtimeapi.NamespaceMode) (runtime.NamespaceMode, error) {
	ok := false
	for _, a := range allowed {
		ok = ok || a == m
	}
	if !ok {
		return 0, fmt.Errorf("%w: %s namespace mode %v is not allowed for a pod", errdefs.ErrInvalidArgument, what, m)
	}
	switch m {
	case runtimeapi.NamespaceMode_CONTAINER:
		return runtime.NamespaceContainer, nil
	case runtimeapi.NamespaceMode_NODE:
		return runtime.NamespaceNode, nil
	case runtimeapi.NamespaceMode_TARGET:
		return runtime.NamespaceTarget, nil
	}
	return runtime.NamespacePod, nil
}

// podNetwork is what CNI needs of a pod.
func podNetwork(id, netns string, cfg *runtimeapi.PodSandboxConfig) PodNetwork {
	md := cfg.GetMetadata()
	pn := PodNetwork{ID: id, NetNS: netns, PodName: md.GetName(), PodNamespace: md.GetNamespace(), PodUID: md.GetUid()}
	for _, pm := range cfg.GetPortMappings() {
		// A mapping without a host port publishes nothing (the kubelet sends
		// containerPort-only entries for documentation).
		if pm.GetHostPort() <= 0 {
			continue
		}
		pn.PortMappings = append(pn.PortMappings, PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	return pn
}
