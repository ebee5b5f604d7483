// Command plugin is an NRI plugin for Berth's tests: a real process on a
// real NRI connection that records what it is told and, when asked, hangs,
// dies, refuses, or adjusts the containers it sees created.
//
//	plugin -socket S -events FILE [-name N] [-idx NN]
//	       [-hang EVENT] [-die EVENT] [-fail EVENT]
//	       [-env K=V] [-annotation K=V] [-mount HOST:CONTAINER] [-cpuset CPUS]
//
// EVENT is an NRI event name (RunPodSandbox, CreateContainer, ...). Each
// event goes to FILE as a JSON line (see nritest.Event) before the plugin
// acts on it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
)

type plugin struct {
	mu     sync.Mutex
	events *os.File

	hang, die, fail string
	// cpuset is what an UpdateContainer answer sets the container's cpuset
	// to.
	cpuset   string
	env, ann []string
	mounts   []string
}

// event is one line of the events file; internal/nritest reads it.
type event struct {
	Event       string            `json:"event"`
	Pod         string            `json:"pod,omitempty"`
	PodName     string            `json:"podName,omitempty"`
	Container   string            `json:"container,omitempty"`
	Name        string            `json:"name,omitempty"`
	State       string            `json:"state,omitempty"`
	Env         []string          `json:"env,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	IPs         []string          `json:"ips,omitempty"`
	Pods        []string          `json:"pods,omitempty"`
	Containers  []string          `json:"containers,omitempty"`
}

func (p *plugin) record(e event) error {
	b, _ := json.Marshal(e)
	p.mu.Lock()
	_, err := p.events.Write(append(b, '\n'))
	p.mu.Unlock()
	if err != nil {
		return err
	}
	switch e.Event {
	case p.die:
		os.Exit(3)
	case p.hang:
		// Hung for good: neither the request's deadline nor the runtime
		// closing the connection ends this.
		select {}
	case p.fail:
		return fmt.Errorf("test plugin refuses %s", e.Event)
	}
	return nil
}

func podEvent(name string, pod *api.PodSandbox) event {
	return event{Event: name, Pod: pod.GetId(), PodName: pod.GetName(), Annotations: pod.GetAnnotations(), IPs: pod.GetIps()}
}

func ctrEvent(name string, pod *api.PodSandbox, c *api.Container) event {
	return event{Event: name, Pod: pod.GetId(), Container: c.GetId(), Name: c.GetName(), State: c.GetState().String(), Env: c.GetEnv(), Annotations: c.GetAnnotations()}
}

func (p *plugin) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	e := event{Event: "Synchronize", Pods: []string{}, Containers: []string{}}
	for _, x := range pods {
		e.Pods = append(e.Pods, x.GetId())
	}
	for _, x := range ctrs {
		e.Containers = append(e.Containers, x.GetId())
	}
	return nil, p.record(e)
}

func (p *plugin) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record(podEvent("RunPodSandbox", pod))
}

func (p *plugin) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record(podEvent("StopPodSandbox", pod))
}

func (p *plugin) RemovePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record(podEvent("RemovePodSandbox", pod))
}

func (p *plugin) CreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if err := p.record(ctrEvent("CreateContainer", pod, c)); err != nil {
		return nil, nil, err
	}
	adj := &api.ContainerAdjustment{}
	for _, kv := range p.env {
		k, v, _ := strings.Cut(kv, "=")
		adj.AddEnv(k, v)
	}
	for _, kv := range p.ann {
		k, v, _ := strings.Cut(kv, "=")
		adj.AddAnnotation(k, v)
	}
	for _, m := range p.mounts {
		src, dst, _ := strings.Cut(m, ":")
		adj.AddMount(&api.Mount{Source: src, Destination: dst, Type: "bind", Options: []string{"rbind", "ro"}})
	}
	return adj, nil, nil
}

func (p *plugin) PostCreateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.record(ctrEvent("PostCreateContainer", pod, c))
}

func (p *plugin) StartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.record(ctrEvent("StartContainer", pod, c))
}

func (p *plugin) PostStartContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.record(ctrEvent("PostStartContainer", pod, c))
}

func (p *plugin) UpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container, _ *api.LinuxResources) ([]*api.ContainerUpdate, error) {
	if err := p.record(ctrEvent("UpdateContainer", pod, c)); err != nil {
		return nil, err
	}
	if p.cpuset == "" {
		return nil, nil
	}
	u := &api.ContainerUpdate{ContainerId: c.GetId()}
	u.SetLinuxCPUSetCPUs(p.cpuset)
	return []*api.ContainerUpdate{u}, nil
}

func (p *plugin) PostUpdateContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.record(ctrEvent("PostUpdateContainer", pod, c))
}

func (p *plugin) UpdatePodSandbox(_ context.Context, pod *api.PodSandbox, _, _ *api.LinuxResources) error {
	return p.record(podEvent("UpdatePodSandbox", pod))
}

func (p *plugin) PostUpdatePodSandbox(_ context.Context, pod *api.PodSandbox) error {
	return p.record(podEvent("PostUpdatePodSandbox", pod))
}

func (p *plugin) StopContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, p.record(ctrEvent("StopContainer", pod, c))
}

func (p *plugin) RemoveContainer(_ context.Context, pod *api.PodSandbox, c *api.Container) error {
	return p.record(ctrEvent("RemoveContainer", pod, c))
}

type list []string

func (l *list) String() string     { return strings.Join(*l, ",") }
func (l *list) Set(v string) error { *l = append(*l, v); return nil }

func main() {
	var (
		p                         plugin
		socket, file, name, index string
	)
	flag.StringVar(&socket, "socket", "", "NRI socket")
	flag.StringVar(&file, "events", "", "file the events are appended to")
	flag.StringVar(&name, "name", "berth-test", "plugin name")
	flag.StringVar(&index, "idx", "50", "plugin index")
	flag.StringVar(&p.hang, "hang", "", "event to hang in")
	flag.StringVar(&p.die, "die", "", "event to exit in")
	flag.StringVar(&p.fail, "fail", "", "event to refuse")
	flag.StringVar(&p.cpuset, "cpuset", "", "cpuset the plugin's UpdateContainer answer sets")
	flag.Var((*list)(&p.env), "env", "K=V to add to created containers")
	flag.Var((*list)(&p.ann), "annotation", "K=V to add to created containers")
	flag.Var((*list)(&p.mounts), "mount", "HOST:CONTAINER read-only bind mount to add to created containers")
	flag.Parse()
	f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin:", err)
		os.Exit(1)
	}
	p.events = f
	s, err := stub.New(&p, stub.WithSocketPath(socket), stub.WithPluginName(name), stub.WithPluginIdx(index))
	if err != nil {
		fmt.Fprintln(os.Stderr, "plugin:", err)
		os.Exit(1)
	}
	// Run returns when the runtime closes the connection.
	if err := s.Run(context.Background()); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "plugin:", err)
		os.Exit(1)
	}
}
