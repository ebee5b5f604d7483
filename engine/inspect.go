package engine

import (
	"context"
	"sort"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"

	bnet "github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/runtime"
)

// Container is a snapshot of a container, everything inspect and list
// show; changing it changes nothing.
type Container struct {
	ID      string
	Name    string // without "/"
	Created time.Time
	Path    string
	Args    []string
	// Config is the create config merged with the image's.
	Config     *container.Config
	HostConfig *container.HostConfig
	// ImageID is the image's ID (sha256:...).
	ImageID        string
	State          State
	RestartCount   int
	Mounts         []MountPoint
	LogPath        string
	HostsPath      string
	ResolvConfPath string
	HostnamePath   string
	// SandboxKey is the network namespace's path (empty with host
	// networking).
	SandboxKey string
	// Networks are the container's endpoints by network name.
	Networks map[string]*network.EndpointSettings
	// Ports are the published ports (none until a network manager
	// publishes them).
	Ports network.PortMap
	// NetworkSettings is the network manager's view of the container
	// (nil without a manager).
	NetworkSettings *bnet.Settings
	// Bundle is the runtime's bundle (the rootfs is Bundle/rootfs while
	// the container exists), UpperDir its writable layer.
	Bundle   string
	UpperDir string
	// Pid is the init's host PID while it runs.
	Pid int
	// ExecIDs are the exec instances that did not finish.
	ExecIDs []string
}

// State is Docker's container state.
type State struct {
	// Status is created, running, paused, restarting, removing, exited
	// or dead.
	Status     container.ContainerState
	Running    bool
	Paused     bool
	Restarting bool
	OOMKilled  bool
	Dead       bool
	Pid        int
	ExitCode   int
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
	// Health is the healthcheck's state; nil without a healthcheck.
	Health *container.Health
}

// Inspect returns the container's snapshot.
func (e *Engine) Inspect(ctx context.Context, ref string) (*Container, error) {
	c, err := e.lookup(ref)
	if err != nil {
		return nil, err
	}
	return e.snapshot(c), nil
}

// List returns every container, newest first.
func (e *Engine) List(ctx context.Context) []*Container {
	e.mu.Lock()
	all := make([]*ctr, 0, len(e.containers))
	for _, c := range e.containers {
		if !c.rec.Pending && !c.removed {
			all = append(all, c)
		}
	}
	e.mu.Unlock()
	out := make([]*Container, 0, len(all))
	for _, c := range all {
		out = append(out, e.snapshot(c))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out
}

// snapshot combines the engine's record with the runtime's state.
func (e *Engine) snapshot(c *ctr) *Container {
	e.mu.Lock()
	rec := c.rec.clone()
	restarting := c.restarting || c.policyStart
	stopping := c.stopping
	e.mu.Unlock()
	out := &Container{
		ID: rec.ID, Name: rec.Name, Created: rec.Created, Path: rec.Path, Args: rec.Args,
		Config: rec.Config, HostConfig: rec.HostConfig, ImageID: rec.ImageID,
		RestartCount: rec.RestartCount, Mounts: rec.Mounts, LogPath: rec.LogPath,
		HostsPath: rec.HostsPath, ResolvConfPath: rec.ResolvConfPath, HostnamePath: rec.HostnamePath,
		Networks: map[string]*network.EndpointSettings{},
	}
	st := &out.State
	rc, err := e.rt.Container(rec.ID)
	switch {
	case err != nil:
		st.Status, st.Dead = container.StateDead, true
		st.Error = err.Error()
	default:
		out.Bundle, out.UpperDir, out.Pid = rc.Bundle, rc.UpperDir, rc.Pid
		st.Pid, st.ExitCode = rc.Pid, int(rc.ExitCode)
		st.StartedAt, st.FinishedAt = rc.StartedAt, rc.FinishedAt
		st.OOMKilled = rc.Reason == runtime.ReasonOOMKilled
		switch rc.State {
		case runtime.ContainerCreated:
			st.Status = container.StateCreated
		case runtime.ContainerRunning:
			st.Status, st.Running = container.StateRunning, true
			if rc.Paused {
				st.Status, st.Paused = container.StatePaused, true
			}
		default:
			st.Status = container.StateExited
			if rc.Reason == runtime.ReasonUnknown {
				st.Error = rc.Message
			}
		}
		if rc.State == runtime.ContainerCreated && !rc.FinishedAt.IsZero() {
			// Recreated for a start that has not happened yet.
			st.Status = container.StateExited
		}
		if rc.State == runtime.ContainerExited && rc.FinishedAt.After(rec.HandledExit) && !rec.Removing && !stopping &&
			shouldRestart(rec.HostConfig.RestartPolicy, int(rc.ExitCode), rec.RestartCount, rec.StoppedByUser) {
			// An exit the engine is about to handle with a restart.
			restarting = true
		}
	}
	if restarting {
		st.Status, st.Restarting, st.Running = container.StateRestarting, true, true
	}
	if !st.Running {
		// The runtime knows the init of a created container, waiting to
		// be started; Docker shows a PID only while it runs.
		st.Pid = 0
		out.Pid = 0
		if rec.StartError != "" {
			st.Error = rec.StartError
			if st.ExitCode == 0 {
				st.ExitCode = 128
			}
		}
	}
	if rec.Removing {
		st.Status = container.StateRemoving
	}
	st.Health = e.healthOf(rec.ID, rec.Config)
	out.ExecIDs = e.execIDs(rec.ID)
	if e.net != nil {
		if ns, err := e.net.Settings(rec.ID); err == nil {
			if !st.Running {
				// dockerd has no endpoint before a container's first
				// start (berthd may attach early, earlyAttachable) and
				// releases it at the exit: an exited container shows no
				// ports or addresses, also in the moment between the exit
				// and its handling (detachNetwork), which docker stop
				// does not wait for.
				ns = unattached(ns)
			}
			out.NetworkSettings = &ns
			out.SandboxKey = ns.SandboxKey
			out.Networks = ns.DockerNetworks()
			out.Ports = ns.DockerPorts()
		}
		return out
	}
	if sb, err := e.rt.Sandbox(rec.ID); err == nil {
		out.SandboxKey = sb.NetNSPath
	}
	mode := string(rec.HostConfig.NetworkMode)
	switch classifyNetwork(rec.HostConfig.NetworkMode) {
	case netHost, netNone:
		out.Networks[mode] = &network.EndpointSettings{}
	case netBridge:
		name := mode
		if name == network.NetworkDefault {
			name = network.NetworkBridge
		}
		out.Networks[name] = &network.EndpointSettings{}
	}
	out.Ports = network.PortMap{}
	for p := range rec.Config.ExposedPorts {
		out.Ports[p] = nil
	}
	return out
}

// unattached is a container's network settings as they read before its
// endpoints exist.
func unattached(ns bnet.Settings) bnet.Settings {
	eps := make([]bnet.Endpoint, len(ns.Endpoints))
	for i, ep := range ns.Endpoints {
		eps[i] = bnet.Endpoint{NetworkID: ep.NetworkID, NetworkName: ep.NetworkName, Config: ep.Config, DNSNames: ep.DNSNames}
	}
	ns.Endpoints, ns.Ports, ns.SandboxKey = eps, nil, ""
	return ns
}
