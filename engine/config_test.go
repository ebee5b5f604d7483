package engine

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCheckName(t *testing.T) {
	for name, want := range map[string]string{
		"web": "web", "/web": "web", "a.b-c_d": "a.b-c_d", "w1": "w1",
		"a": "", "-x": "", "a/b": "", "bad name": "", "": "", "ünï": "",
	} {
		got, err := checkName(name)
		if want == "" {
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "Invalid container name ("+name+"), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed") {
				t.Errorf("checkName(%q) = %q, %v; want docker's invalid-name error", name, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("checkName(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
}

// TestNameReservationIsAtomic: of concurrent reservations of one name,
// exactly one wins; the others get docker's conflict naming the holder.
func TestNameReservationIsAtomic(t *testing.T) {
	e := &Engine{names: map[string]string{}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var winners []string
	var errs []error
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := strings.Repeat(string(rune('a'+i%26)), 64)
			e.mu.Lock()
			_, err := e.reserveNameLocked("same", id)
			e.mu.Unlock()
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				winners = append(winners, id)
			} else {
				errs = append(errs, err)
			}
		}()
	}
	wg.Wait()
	if len(winners) != 1 || len(errs) != 49 {
		t.Fatalf("%d winners, %d errors", len(winners), len(errs))
	}
	for _, err := range errs {
		if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), `The container name "/same" is already in use by container "`+winners[0]+`"`) {
			t.Errorf("loser's error: %v", err)
		}
	}
	// A released name can be taken again; a random name is never taken.
	e.mu.Lock()
	e.releaseNameLocked("same", "not-the-holder")
	if _, ok := e.names["same"]; !ok {
		t.Error("release by another ID freed the name")
	}
	e.releaseNameLocked("same", winners[0])
	if _, err := e.reserveNameLocked("same", "x"); err != nil {
		t.Errorf("reserve after release: %v", err)
	}
	for range 200 {
		n, err := e.reserveNameLocked("", "y")
		if err != nil || !strings.Contains(n, "_") {
			t.Fatalf("random name %q %v", n, err)
		}
	}
	e.mu.Unlock()
}

func TestVerifySettings(t *testing.T) {
	pid := int64(10)
	neg := int64(-5)
	for _, c := range []struct {
		name string
		cfg  container.Config
		hc   container.HostConfig
		want string // "" means valid
	}{
		{"defaults", container.Config{}, container.HostConfig{}, ""},
		{"relative workdir", container.Config{WorkingDir: "rel"}, container.HostConfig{}, "the working directory 'rel' is invalid, it needs to be an absolute path"},
		{"bad stop signal", container.Config{StopSignal: "SIGNOPE"}, container.HostConfig{}, "SIGNOPE"},
		{"empty env name", container.Config{Env: []string{"=x"}}, container.HostConfig{}, "invalid environment variable: =x"},
		{"healthcheck interval", container.Config{Healthcheck: &container.HealthConfig{Interval: time.Microsecond}}, container.HostConfig{}, "Interval in Healthcheck cannot be less than 1ms"},
		{"autoremove with policy", container.Config{}, container.HostConfig{AutoRemove: true, RestartPolicy: container.RestartPolicy{Name: "always"}}, "can't create 'AutoRemove' container with restart policy"},
		{"unknown policy", container.Config{}, container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"},
		{"retries without on-failure", container.Config{}, container.HostConfig{RestartPolicy: container.RestartPolicy{Name: "always", MaximumRetryCount: 2}}, "maximum retry count can only be used with 'on-failure'"},
		{"bad add-host", container.Config{}, container.HostConfig{ExtraHosts: []string{"nohost"}}, `bad format for add-host: "nohost"`},
		{"bad add-host ip", container.Config{}, container.HostConfig{ExtraHosts: []string{"h:1.2.3"}}, "invalid IP address in add-host"},
		{"unknown capability", container.Config{}, container.HostConfig{CapAdd: []string{"CAP_BOGUS"}}, `unknown capability: "CAP_BOGUS"`},
		{"bad ipc", container.Config{}, container.HostConfig{IpcMode: "weird"}, "invalid IPC mode: weird"},
		{"bad pid", container.Config{}, container.HostConfig{PidMode: "weird"}, "invalid PID mode: weird"},
		{"negative shm", container.Config{}, container.HostConfig{ShmSize: -1}, "SHM size can not be less than 0"},
		{"oom score", container.Config{}, container.HostConfig{OomScoreAdj: 1001}, "range for oom score adj is [-1000, 1000]"},
		{"tiny memory", container.Config{}, container.HostConfig{Resources: container.Resources{Memory: 1024}}, "Minimum memory limit allowed is 6MB"},
		{"swap below memory", container.Config{}, container.HostConfig{Resources: container.Resources{Memory: 64 << 20, MemorySwap: 32 << 20}}, "Minimum memoryswap limit should be larger than memory limit"},
		{"nano and quota", container.Config{}, container.HostConfig{Resources: container.Resources{NanoCPUs: 1e9, CPUQuota: 50000}}, "Nano CPUs and CPU Quota cannot both be set"},
		{"too many cpus", container.Config{}, container.HostConfig{Resources: container.Resources{NanoCPUs: 1e12}}, "range of CPUs is from 0.01 to"},
		{"uts host with hostname", container.Config{Hostname: "h"}, container.HostConfig{UTSMode: "host"}, "conflicting options: hostname and the UTS mode"},
		{"container net with hostname", container.Config{Hostname: "h"}, container.HostConfig{NetworkMode: "container:x"}, "conflicting options: hostname and the network mode"},
		{"container net with ports", container.Config{}, container.HostConfig{NetworkMode: "container:x", PortBindings: network.PortMap{network.MustParsePort("80/tcp"): nil}}, "conflicting options: port publishing"},
		{"bad ulimit", container.Config{}, container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "bogus", Soft: 1, Hard: 1}}}}, "invalid ulimit type: bogus"},
		{"ulimit soft over hard", container.Config{}, container.HostConfig{Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 2, Hard: 1}}}}, "soft limit must be less than or equal to hard limit"},
		{"bad security opt", container.Config{}, container.HostConfig{SecurityOpt: []string{"whatever"}}, `invalid --security-opt 1: "whatever"`},
		{"bad device mode", container.Config{}, container.HostConfig{Resources: container.Resources{Devices: []container.DeviceMapping{{PathOnHost: "/dev/null", CgroupPermissions: "rwx"}}}}, "invalid device mode: rwx"},
		{"pids limit fine", container.Config{}, container.HostConfig{Resources: container.Resources{PidsLimit: &pid}}, ""},
		{"negative cpu shares", container.Config{}, container.HostConfig{Resources: container.Resources{CPUShares: neg}}, "invalid CPU shares (-5)"},
		{"unknown runtime", container.Config{}, container.HostConfig{Runtime: "kata"}, "unknown or invalid runtime name: kata"},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, hc := c.cfg, c.hc
			_, err := verifySettings(&cfg, &hc)
			switch {
			case c.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("error %v, want one containing %q", err, c.want)
			case c.want != "" && !errdefs.IsInvalidArgument(err):
				t.Errorf("error %v is not InvalidArgument (400)", err)
			}
			if err == nil && (hc.RestartPolicy.Name != "no" || hc.NetworkMode != "default") {
				t.Errorf("defaults not filled: %q %q", hc.RestartPolicy.Name, hc.NetworkMode)
			}
		})
	}
}

// TestMergeImage follows dockerd's merge: the request wins, env, ports,
// labels and volumes are unions, an entrypoint in the request drops the
// image's cmd, [""] means no entrypoint.
func TestMergeImage(t *testing.T) {
	img := ocispec.ImageConfig{
		User: "app", Env: []string{"PATH=/bin", "A=image", "B=image"}, WorkingDir: "/srv",
		Entrypoint: []string{"/entry"}, Cmd: []string{"serve", "--port=80"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}}, Volumes: map[string]struct{}{"/data": {}},
		Labels: map[string]string{"from": "image", "both": "image"}, StopSignal: "SIGQUIT",
	}
	ext := dockerspec.DockerOCIImageConfigExt{Healthcheck: &dockerspec.HealthcheckConfig{Test: []string{"CMD", "true"}, Interval: time.Second, Retries: 3}}

	cfg := container.Config{Env: []string{"A=user"}, Labels: map[string]string{"both": "user"}, ExposedPorts: network.PortSet{network.MustParsePort("443/tcp"): {}},
		Healthcheck: &container.HealthConfig{Interval: 5 * time.Second}}
	mergeImage(&cfg, img, ext)
	path, args, err := command(&cfg)
	if err != nil || path != "/entry" || strings.Join(args, " ") != "serve --port=80" {
		t.Errorf("command = %q %q %v", path, args, err)
	}
	if strings.Join(cfg.Env, ",") != "A=user,PATH=/bin,B=image" {
		t.Errorf("env = %v", cfg.Env)
	}
	if cfg.User != "app" || cfg.WorkingDir != "/srv" || cfg.StopSignal != "SIGQUIT" {
		t.Errorf("user %q workdir %q stop signal %q", cfg.User, cfg.WorkingDir, cfg.StopSignal)
	}
	if len(cfg.ExposedPorts) != 2 || len(cfg.Volumes) != 1 {
		t.Errorf("ports %v volumes %v", cfg.ExposedPorts, cfg.Volumes)
	}
	if cfg.Labels["both"] != "user" || cfg.Labels["from"] != "image" {
		t.Errorf("labels %v", cfg.Labels)
	}
	if h := cfg.Healthcheck; h.Interval != 5*time.Second || h.Retries != 3 || strings.Join(h.Test, " ") != "CMD true" {
		t.Errorf("healthcheck %+v", h)
	}

	// The request's entrypoint drops the image's cmd.
	cfg = container.Config{Entrypoint: []string{"echo"}}
	mergeImage(&cfg, img, ext)
	if path, args, _ := command(&cfg); path != "echo" || len(args) != 0 {
		t.Errorf("entrypoint override: %q %q", path, args)
	}
	// --entrypoint "": no entrypoint, and no cmd of the image either.
	cfg = container.Config{Entrypoint: []string{""}, Cmd: []string{"ls"}}
	mergeImage(&cfg, img, ext)
	if path, args, _ := command(&cfg); path != "ls" || len(args) != 0 {
		t.Errorf(`entrypoint "": %q %q`, path, args)
	}
	// The request's cmd replaces the image's under its entrypoint.
	cfg = container.Config{Cmd: []string{"debug"}}
	mergeImage(&cfg, img, ext)
	if path, args, _ := command(&cfg); path != "/entry" || strings.Join(args, " ") != "debug" {
		t.Errorf("cmd override: %q %q", path, args)
	}
	// Nothing to run at all.
	cfg = container.Config{}
	mergeImage(&cfg, ocispec.ImageConfig{}, dockerspec.DockerOCIImageConfigExt{})
	if _, _, err := command(&cfg); err == nil || !strings.Contains(err.Error(), "no command specified") {
		t.Errorf("no command: %v", err)
	}
}

func TestRestartPolicyDecisions(t *testing.T) {
	p := func(name string, max int) container.RestartPolicy {
		return container.RestartPolicy{Name: container.RestartPolicyMode(name), MaximumRetryCount: max}
	}
	for _, c := range []struct {
		policy   container.RestartPolicy
		code     int
		restarts int
		byUser   bool
		want     bool
	}{
		{p("no", 0), 1, 0, false, false},
		{p("always", 0), 0, 5, false, true},
		{p("always", 0), 0, 0, true, false},
		{p("unless-stopped", 0), 0, 0, false, true},
		{p("unless-stopped", 0), 1, 0, true, false},
		{p("on-failure", 0), 0, 0, false, false},
		{p("on-failure", 0), 1, 100, false, true},
		{p("on-failure", 3), 1, 2, false, true},
		{p("on-failure", 3), 1, 3, false, false},
	} {
		if got := shouldRestart(c.policy, c.code, c.restarts, c.byUser); got != c.want {
			t.Errorf("shouldRestart(%+v, code %d, %d restarts, by user %v) = %v", c.policy, c.code, c.restarts, c.byUser, got)
		}
	}
	// Docker's backoff: 100 ms doubling to a minute, reset after 10 s.
	var d time.Duration
	var seq []time.Duration
	for range 12 {
		d = nextBackoff(d, time.Second)
		seq = append(seq, d)
	}
	if seq[0] != 100*time.Millisecond || seq[1] != 200*time.Millisecond || seq[2] != 400*time.Millisecond || seq[9] != 51200*time.Millisecond || seq[10] != time.Minute || seq[11] != time.Minute {
		t.Errorf("backoff sequence %v", seq)
	}
	if got := nextBackoff(time.Minute, 10*time.Second); got != 100*time.Millisecond {
		t.Errorf("backoff after a 10 s run = %s", got)
	}
}

// TestDiscardUnsupported: what the host's cgroups cannot apply is dropped
// with dockerd's warnings; what they can stays.
func TestDiscardUnsupported(t *testing.T) {
	sw, yes := int64(30), true
	r := container.Resources{MemorySwappiness: &sw, OomKillDisable: &yes, BlkioWeight: 300}
	if w := discardUnsupported(&r, cgroupFeatures{swappiness: true, oomKillDisable: true, blkioWeight: true}); len(w) != 0 || r.MemorySwappiness == nil || r.OomKillDisable == nil || r.BlkioWeight != 300 {
		t.Errorf("all supported: %v %+v", w, r)
	}
	w := discardUnsupported(&r, cgroupFeatures{})
	if len(w) != 3 || r.MemorySwappiness != nil || r.OomKillDisable != nil || r.BlkioWeight != 0 ||
		!strings.Contains(w[0], "Memory swappiness discarded") || !strings.Contains(w[1], "OomKillDisable discarded") || !strings.Contains(w[2], "Weight discarded") {
		t.Errorf("none supported: %q %+v", w, r)
	}
	off := false
	r = container.Resources{OomKillDisable: &off}
	if w := discardUnsupported(&r, cgroupFeatures{}); len(w) != 0 || r.OomKillDisable != nil {
		t.Errorf("--oom-kill-disable=false where unsupported: %q", w)
	}
}

func TestKernelAtLeast(t *testing.T) {
	for _, c := range []struct {
		release string
		want    bool
	}{
		{"6.1.0-18-amd64", true}, {"5.12.0", true}, {"5.11.22", false}, {"4.19.0", false}, {"5.15", true}, {"garbage", false},
	} {
		if got := kernelAtLeast(c.release, 5, 12); got != c.want {
			t.Errorf("kernelAtLeast(%q, 5, 12) = %v", c.release, got)
		}
	}
}

func TestEarlyAttachable(t *testing.T) {
	ports := network.PortMap{network.MustParsePort("80/tcp"): nil}
	for _, c := range []struct {
		hc   container.HostConfig
		kind networkKind
		want bool
	}{
		{container.HostConfig{}, netBridge, true},
		{container.HostConfig{PortBindings: ports}, netBridge, false},
		{container.HostConfig{PublishAllPorts: true}, netBridge, false},
		{container.HostConfig{Links: []string{"db:db"}}, netBridge, false},
		{container.HostConfig{}, netHost, false},
		{container.HostConfig{}, netNone, false},
		{container.HostConfig{}, netContainer, false},
	} {
		if got := earlyAttachable(&c.hc, c.kind); got != c.want {
			t.Errorf("earlyAttachable(%+v, %v) = %v", c.hc, c.kind, got)
		}
	}
}
