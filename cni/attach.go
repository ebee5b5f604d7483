package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
)

// rollbackTimeout bounds the DEL that undoes a failed ADD; it runs on a
// context the caller's cancellation cannot abort.
const rollbackTimeout = time.Minute

// PodArgs identify a pod to the plugins (CNI_ARGS K8S_POD_*) and carry the
// runtime capability args. Attach and Detach take the same values.
type PodArgs struct {
	// ID is the sandbox ID: CNI_CONTAINERID and K8S_POD_INFRA_CONTAINER_ID.
	ID string
	// NetNS is the pinned network namespace path.
	NetNS        string
	PodName      string
	PodNamespace string
	PodUID       string
	// PortMappings are the pod's hostPorts (portMappings capability).
	// Mappings with HostPort 0 are dropped, as the kubelet does.
	PortMappings []PortMapping
	// Bandwidth limits the pod's traffic (bandwidth capability); nil means
	// no limit.
	Bandwidth *Bandwidth
	// DNS is passed to plugins that honour the dns capability; nil omits it.
	DNS *DNS
}

// AttachRequest is the input of Attach.
type AttachRequest = PodArgs

// DetachRequest is the input of Detach: the same values as the Attach. NetNS
// may name a path that is gone.
type DetachRequest = PodArgs

// PortMapping is one hostPort of a pod, in portmap's JSON form.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"` // tcp (default), udp or sctp
	HostIP        string `json:"hostIP,omitempty"`
}

// Bandwidth is the bandwidth plugin's capability: rates in bits per
// second, bursts in bits.
type Bandwidth struct {
	IngressRate  uint64 `json:"ingressRate,omitempty"`
	IngressBurst uint64 `json:"ingressBurst,omitempty"`
	EgressRate   uint64 `json:"egressRate,omitempty"`
	EgressBurst  uint64 `json:"egressBurst,omitempty"`
}

// DNS is the dns capability (and the DNS part of a result).
type DNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Attach connects the pod's network namespace to the node's network: lo up,
// then ADD of the first config in ConfDir. On failure every ADD that ran is
// undone with DEL before Attach returns.
func (m *Manager) Attach(ctx context.Context, req AttachRequest) (Result, error) {
	if err := m.checkNetNS(req.NetNS); err != nil {
		return Result{}, fmt.Errorf("attach pod %s: %w", req.ID, err)
	}
	rt, err := m.runtimeConf(req, req.NetNS)
	if err != nil {
		return Result{}, fmt.Errorf("attach pod %s: %w", req.ID, err)
	}
	net, err := m.loadNetwork()
	if err != nil {
		return Result{}, fmt.Errorf("attach pod %s: %w", req.ID, err)
	}
	if err := findPlugins(m.cfg.BinDirs, pluginTypes(m.loopback, net.list)...); err != nil {
		return Result{}, fmt.Errorf("attach pod %s: %w", req.ID, err)
	}

	// Before any plugin runs: from here on a crash leaves something that
	// only this record names.
	it := &intent{Args: req, Network: net.list.Bytes}
	if err := m.writeIntent(it, true); err != nil {
		return Result{}, fmt.Errorf("attach pod %s: %w", req.ID, err)
	}
	// undo rolls the ADD back; the intent goes only if every DEL did.
	undo := func(list *libcni.NetworkConfigList, last []byte, loRT *libcni.RuntimeConf) {
		if m.rollback(ctx, list, last, loRT, rt) == nil {
			m.removeIntent(req.ID)
		}
	}

	loRT := *rt
	loRT.IfName = loopbackIfName
	loRT.CapabilityArgs = nil
	if !m.cfg.LoopbackUp {
		if _, err := m.cni.AddNetwork(ctx, m.loopback, &loRT); err != nil {
			undo(nil, nil, &loRT)
			return Result{}, fmt.Errorf("attach pod %s: bring up loopback: %w", req.ID, classify(err))
		}
	}
	// A CNIConfig of its own for this ADD, to learn how far the chain got
	// (and record it in the intent).
	rec := &addRecorder{Exec: m.exec, done: func(out []byte) {
		it.Result = out
		// Best effort: without it a DEL still frees the lease and the
		// veth, only firewall and portmap lose the addresses.
		_ = m.writeIntent(it, false)
	}}
	res, err := libcni.NewCNIConfigWithCacheDir(m.cfg.BinDirs, m.cfg.CacheDir, rec).AddNetworkList(ctx, net.list, rt)
	if err != nil {
		undo(net.list, rec.last, &loRT)
		return Result{}, fmt.Errorf("attach pod %s to network %s: %w", req.ID, net.list.Name, classify(err))
	}
	out, err := resultFromCNI(res, rt.IfName)
	if err != nil {
		undo(net.list, rec.last, &loRT)
		return Result{}, fmt.Errorf("attach pod %s to network %s: %w", req.ID, net.list.Name, err)
	}
	out.Network = net.list.Name
	return out, nil
}

// rollback undoes a failed Attach: DEL of the list (if it was tried) and of
// loopback. libcni caches nothing for a failed ADD, so each DEL gets as
// prevResult the output of the last plugin whose ADD succeeded: a plugin
// such as firewall removes only the rules for the addresses it is told.
// Each plugin gets its DEL even when a later one's fails (DelNetworkList
// stops at the first failure, and the plugin that broke the ADD often
// breaks its DEL too), so the IPAM plugin always frees the address. It
// returns the DELs' errors joined; Attach drops them (it reports the ADD
// failure, and the intent stays for a later Detach or GC to retry). A nil
// loRT skips loopback (AttachNetwork leaves lo to the caller).
func (m *Manager) rollback(ctx context.Context, list *libcni.NetworkConfigList, lastResult []byte, loRT, rt *libcni.RuntimeConf) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	var errs []error
	if list != nil {
		inject := map[string]any{"name": list.Name, "cniVersion": list.CNIVersion}
		var prev map[string]any
		if json.Unmarshal(lastResult, &prev) == nil && prev != nil {
			if _, ok := prev["cniVersion"]; !ok {
				prev["cniVersion"] = list.CNIVersion
			}
			inject["prevResult"] = prev
		}
		for i := len(list.Plugins) - 1; i >= 0; i-- {
			// A list's plugins inherit the list's name and version, which
			// DelNetwork reads from the plugin's own config.
			pc, err := libcni.InjectConf(list.Plugins[i], inject)
			if err == nil {
				err = m.cni.DelNetwork(ctx, pc, rt)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", list.Plugins[i].Network.Type, classify(err)))
			}
		}
	}
	if loRT != nil {
		// lo has nothing to release: its DEL only drops a cache entry.
		_ = m.cni.DelNetwork(ctx, m.loopback, loRT)
	}
	return errors.Join(errs...)
}

// addRecorder keeps the output of the last successful ADD it ran and
// hands it to done.
type addRecorder struct {
	invoke.Exec
	last []byte
	done func([]byte)
}

func (r *addRecorder) ExecPlugin(ctx context.Context, pluginPath string, stdin []byte, environ []string) ([]byte, error) {
	out, err := r.Exec.ExecPlugin(ctx, pluginPath, stdin, environ)
	if err == nil && slices.Contains(environ, "CNI_COMMAND=ADD") {
		r.last = out
		if r.done != nil {
			r.done(out)
		}
	}
	return out, err
}

// runtimeConf builds libcni's per-call arguments for the pod's interface.
func (m *Manager) runtimeConf(req PodArgs, netns string) (*libcni.RuntimeConf, error) {
	if req.ID == "" {
		return nil, fmt.Errorf("%w: empty pod id", errdefs.ErrInvalidArgument)
	}
	// CNI_ARGS is "K=V;K=V": a value holding ';' or '=' would forge
	// another argument.
	for _, v := range []string{req.ID, req.PodName, req.PodNamespace, req.PodUID} {
		if strings.ContainsAny(v, ";=") {
			return nil, fmt.Errorf("%w: pod argument %q contains ';' or '='", errdefs.ErrInvalidArgument, v)
		}
	}
	caps := map[string]any{}
	var ports []PortMapping
	for _, p := range req.PortMappings {
		if p.HostPort == 0 {
			continue
		}
		if p.HostPort < 0 || p.HostPort > 65535 || p.ContainerPort <= 0 || p.ContainerPort > 65535 {
			return nil, fmt.Errorf("%w: port mapping %d->%d out of range", errdefs.ErrInvalidArgument, p.HostPort, p.ContainerPort)
		}
		p.Protocol = strings.ToLower(p.Protocol)
		switch p.Protocol {
		case "":
			p.Protocol = "tcp"
		case "tcp", "udp", "sctp":
		default:
			return nil, fmt.Errorf("%w: port mapping protocol %q", errdefs.ErrInvalidArgument, p.Protocol)
		}
		ports = append(ports, p)
	}
	if len(ports) > 0 {
		caps["portMappings"] = ports
	}
	if req.Bandwidth != nil {
		caps["bandwidth"] = *req.Bandwidth
	}
	if req.DNS != nil {
		caps["dns"] = *req.DNS
	}
	return &libcni.RuntimeConf{
		ContainerID: req.ID,
		NetNS:       netns,
		IfName:      m.cfg.IfName,
		// IgnoreUnknown=1 first: plugins that do not know K8S_POD_* (bridge)
		// reject them otherwise.
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", req.PodNamespace},
			{"K8S_POD_NAME", req.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", req.ID},
			{"K8S_POD_UID", req.PodUID},
		},
		CapabilityArgs: caps,
	}, nil
}

// checkNetNS refuses a namespace outside NetNSDir or the host's own: the
// plugins would configure whatever namespace they are given.
func (m *Manager) checkNetNS(path string) error {
	if path == "" {
		return fmt.Errorf("%w: empty network namespace path", errdefs.ErrInvalidArgument)
	}
	rel, err := filepath.Rel(m.cfg.NetNSDir, filepath.Clean(path))
	if err != nil || !filepath.IsAbs(path) || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%w: network namespace %s is not under %s", errdefs.ErrInvalidArgument, path, m.cfg.NetNSDir)
	}
	var st, host syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("network namespace %s: %w", path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("network namespace %s: %w", path, err)
	}
	// thread-self, not self: /proc/self/ns is the main thread's, and the
	// runtime may have that thread inside a pod's namespaces for a moment
	// while it pins them; this goroutine's thread is never locked there.
	if syscall.Stat("/proc/thread-self/ns/net", &host) == nil && st.Dev == host.Dev && st.Ino == host.Ino {
		return fmt.Errorf("%w: %s is the host's network namespace", errdefs.ErrInvalidArgument, path)
	}
	return nil
}

func pluginTypes(lo *libcni.NetworkConfig, list *libcni.NetworkConfigList) []string {
	out := []string{lo.Network.Type}
	for _, p := range list.Plugins {
		out = append(out, p.Network.Type)
	}
	return out
}
