package cri

import (
	"context"
	"encoding/json"
	"fmt"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// ContainerStatus reports a container's state, exit, image, mounts, log
// path, resources and user; verbose adds an "info" JSON.
func (s *RuntimeService) ContainerStatus(ctx context.Context, req *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	c, err := s.opts.Containers.Container(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("container status %s: %w", req.GetContainerId(), err)
	}
	st, err := s.containerStatus(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("container status %s: %w", c.ID, err)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if req.GetVerbose() {
		info, err := json.Marshal(containerInfo{
			SandboxID:   c.SandboxID,
			Pid:         c.Pid,
			Bundle:      c.Bundle,
			SnapshotKey: c.ID,
			UpperDir:    c.UpperDir,
			StopSignal:  unixSignalName(c.Config.StopSignal),
			RuntimeSpec: s.runtimeSpec(ctx, c.ID),
		})
		if err != nil {
			return nil, fmt.Errorf("container status %s: encode info: %w", c.ID, err)
		}
		resp.Info = map[string]string{"info": string(info)}
	}
	return resp, nil
}

// containerInfo is the verbose "info" of ContainerStatus.
type containerInfo struct {
	SandboxID   string      `json:"sandboxID"`
	Pid         int         `json:"pid"`
	Bundle      string      `json:"bundle,omitempty"`
	SnapshotKey string      `json:"snapshotKey"`
	UpperDir    string      `json:"upperDir,omitempty"`
	StopSignal  string      `json:"stopSignal"`
	RuntimeSpec *specs.Spec `json:"runtimeSpec,omitempty"`
}

// containerStatus converts a runtime container to its CRI status.
func (s *RuntimeService) containerStatus(ctx context.Context, c *runtime.Container) (*runtimeapi.ContainerStatus, error) {
	var cfg runtimeapi.ContainerConfig
	if err := readRecord(c.Config.Annotations, annContainerConfig, &cfg); err != nil {
		return nil, err
	}
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		State:       containerState(c.State),
		CreatedAt:   unixNano(c.CreatedAt),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       &runtimeapi.ImageSpec{Image: s.imageName(ctx, c), Annotations: cfg.GetImage().GetAnnotations()},
		ImageRef:    c.Config.ImageRef,
		ImageId:     c.Config.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      nonNilMap(c.Config.Labels),
		Annotations: visibleAnnotations(c.Config.Annotations),
		Mounts:      cfg.GetMounts(),
		LogPath:     c.Config.LogPath,
		Resources:   &runtimeapi.ContainerResources{Linux: criResources(c.Config.Spec.Resources, c.Config.Spec.OOMScoreAdj)},
		StopSignal:  criSignal(c.Config.StopSignal),
	}
	if u := c.User; u != nil {
		lu := &runtimeapi.LinuxContainerUser{Uid: int64(u.UID), Gid: int64(u.GID)}
		for _, g := range u.AdditionalGIDs {
			lu.SupplementalGroups = append(lu.SupplementalGroups, int64(g))
		}
		st.User = &runtimeapi.ContainerUser{Linux: lu}
	}
	return st, nil
}

// imageName is the image as CRI reports it: the image's first tag when it
// still has one, else the name the container was created with (containerd
// does the same, so that the kubelet sees a canonical name).
func (s *RuntimeService) imageName(ctx context.Context, c *runtime.Container) string {
	if c.Config.ImageID != "" {
		if img, err := s.opts.Images.Get(ctx, c.Config.ImageID); err == nil && len(img.RepoTags) > 0 {
			return img.RepoTags[0]
		}
	}
	return c.Config.Image
}

// runtimeSpec is the container's OCI spec for a verbose status; nil (and
// a log line) when the runtime cannot read it: the rest of the status is
// still worth having.
func (s *RuntimeService) runtimeSpec(ctx context.Context, id string) *specs.Spec {
	sp, err := s.opts.Containers.ContainerSpec(id)
	if err != nil {
		logctx.From(ctx).DebugContext(ctx, "verbose container status without its spec", "id", id, "error", err)
		return nil
	}
	return sp
}

func containerState(st runtime.ContainerState) runtimeapi.ContainerState {
	switch st {
	case runtime.ContainerCreated:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case runtime.ContainerRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case runtime.ContainerExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// unixNano is 0 for an unset time, as CRI expects, not year 1's value.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// criResources converts recorded limits back to CRI.
func criResources(r spec.Resources, oom *int) *runtimeapi.LinuxContainerResources {
	out := &runtimeapi.LinuxContainerResources{
		CpuPeriod:          int64(r.CPUPeriod),
		CpuQuota:           r.CPUQuota,
		CpuShares:          int64(r.CPUShares),
		MemoryLimitInBytes: r.MemoryLimit,
		CpusetCpus:         r.CpusetCpus,
		CpusetMems:         r.CpusetMems,
		Unified:            r.Unified,
	}
	if r.MemorySwap != nil {
		out.MemorySwapLimitInBytes = *r.MemorySwap
	}
	if oom != nil {
		out.OomScoreAdj = int64(*oom)
	}
	for _, h := range r.HugepageLimits {
		out.HugepageLimits = append(out.HugepageLimits, &runtimeapi.HugepageLimit{PageSize: h.PageSize, Limit: h.Limit})
	}
	return out
}

// criSignal converts a signal to CRI's enum; 0 and unnamed signals are
// RUNTIME_DEFAULT.
func criSignal(sig syscall.Signal) runtimeapi.Signal {
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if v, ok := runtimeapi.Signal_value["SIGNAL_"+unixSignalName(sig)]; ok {
		return runtimeapi.Signal(v)
	}
	return runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT
}

func unixSignalName(sig syscall.Signal) string {
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	return unix.SignalName(sig)
}
