package cri

import (
	"errors"
	"reflect"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime/spec"
)

func ptr[T any](v T) *T { return &v }

func TestContainerArgs(t *testing.T) {
	img := ocispec.ImageConfig{Entrypoint: []string{"/ep"}, Cmd: []string{"cmd", "arg"}}
	for _, tc := range []struct {
		name          string
		command, args []string
		img           ocispec.ImageConfig
		want          []string
	}{
		{"image defaults", nil, nil, img, []string{"/ep", "cmd", "arg"}},
		{"args replace cmd", nil, []string{"x"}, img, []string{"/ep", "x"}},
		{"command drops entrypoint and cmd", []string{"/bin/sh"}, nil, img, []string{"/bin/sh"}},
		{"command and args", []string{"/bin/sh"}, []string{"-c", "true"}, img, []string{"/bin/sh", "-c", "true"}},
		{"empty entrypoint means none", nil, nil, ocispec.ImageConfig{Entrypoint: []string{""}, Cmd: []string{"sh"}}, []string{"sh"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := containerArgs(&runtimeapi.ContainerConfig{Command: tc.command, Args: tc.args}, tc.img)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("args = %q, want %q", got, tc.want)
			}
		})
	}
	if _, err := containerArgs(&runtimeapi.ContainerConfig{}, ocispec.ImageConfig{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("no command anywhere: %v, want InvalidArgument", err)
	}
}

// baseInput is a minimal valid translation input.
func baseInput(mod func(*runtimeapi.ContainerConfig)) specInput {
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
		Image:    &runtimeapi.ImageSpec{Image: "busybox"},
		Linux:    &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{}},
	}
	if mod != nil {
		mod(cfg)
	}
	return specInput{
		ID:        "cid",
		SandboxID: "sid",
		Config:    cfg,
		Sandbox: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "p", Namespace: "ns", Uid: "u"},
			Hostname: "pod-host",
			Linux:    &runtimeapi.LinuxPodSandboxConfig{Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
		},
		Image: ocispec.ImageConfig{
			Env:        []string{"PATH=/bin", "A=image"},
			Cmd:        []string{"sh"},
			WorkingDir: "/work",
			User:       "www-data:1004",
		},
	}
}

func TestContainerSpec(t *testing.T) {
	for _, tc := range []struct {
		name  string
		mod   func(*runtimeapi.ContainerConfig)
		check func(t *testing.T, c spec.Container)
	}{
		{"image defaults", nil, func(t *testing.T, c spec.Container) {
			if !reflect.DeepEqual(c.Args, []string{"sh"}) || c.WorkingDir != "/work" || c.User.Spec != "www-data:1004" || c.Hostname != "pod-host" {
				t.Errorf("args %q cwd %q user %q hostname %q", c.Args, c.WorkingDir, c.User.Spec, c.Hostname)
			}
			// containerd gives CRI containers no default masks: non-nil empty.
			if c.MaskedPaths == nil || len(c.MaskedPaths) != 0 || c.ReadonlyPaths == nil || len(c.ReadonlyPaths) != 0 {
				t.Errorf("masked %v readonly %v, want empty non-nil", c.MaskedPaths, c.ReadonlyPaths)
			}
			if c.Seccomp.Kind != spec.SeccompUnconfined || c.OOMScoreAdj != nil {
				t.Errorf("seccomp %v oom %v", c.Seccomp, c.OOMScoreAdj)
			}
			if c.Sysctls["net.ipv4.ip_forward"] != "1" {
				t.Errorf("pod sysctls not applied: %v", c.Sysctls)
			}
			if c.Annotations[annSandboxID] != "sid" || c.Annotations[annContainerName] != "c" || c.Annotations[annSandboxNS] != "ns" {
				t.Errorf("annotations %v", c.Annotations)
			}
		}},
		{"env: image first, request after", func(c *runtimeapi.ContainerConfig) {
			c.Envs = []*runtimeapi.KeyValue{{Key: "A", Value: []byte("req")}, {Key: "B", Value: []byte("x=y")}}
		}, func(t *testing.T, c spec.Container) {
			if want := []string{"PATH=/bin", "A=image", "A=req", "B=x=y"}; !reflect.DeepEqual(c.Env, want) {
				t.Errorf("env = %q, want %q", c.Env, want)
			}
		}},
		{"working dir from request", func(c *runtimeapi.ContainerConfig) { c.WorkingDir = "/req" }, func(t *testing.T, c spec.Container) {
			if c.WorkingDir != "/req" {
				t.Errorf("cwd = %q", c.WorkingDir)
			}
		}},
		{"run_as_user with group and supplemental groups, strict", func(c *runtimeapi.ContainerConfig) {
			sc := c.Linux.SecurityContext
			sc.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: 2000}
			sc.SupplementalGroups = []int64{3000, 4000}
			sc.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
		}, func(t *testing.T, c spec.Container) {
			want := spec.User{Spec: "1000", GID: ptr(uint32(2000)), SupplementalGroups: []uint32{3000, 4000}, GroupsPolicy: spec.GroupsStrict}
			if !reflect.DeepEqual(c.User, want) {
				t.Errorf("user = %+v, want %+v", c.User, want)
			}
		}},
		{"run_as_username wins over run_as_user", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsUsername = "nobody"
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: 5}
		}, func(t *testing.T, c spec.Container) {
			if c.User.Spec != "nobody" {
				t.Errorf("user = %q", c.User.Spec)
			}
		}},
		{"security context", func(c *runtimeapi.ContainerConfig) {
			sc := c.Linux.SecurityContext
			sc.ReadonlyRootfs, sc.NoNewPrivs, sc.Privileged = true, true, true
			sc.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"NET_ADMIN"}, DropCapabilities: []string{"ALL"}}
			sc.MaskedPaths = []string{"/proc/kcore"}
			sc.ReadonlyPaths = []string{"/proc/sys"}
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
			sc.Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "prof"}
		}, func(t *testing.T, c spec.Container) {
			if !c.ReadOnlyRootfs || !c.NoNewPrivileges || !c.Privileged {
				t.Errorf("ro %v nnp %v priv %v", c.ReadOnlyRootfs, c.NoNewPrivileges, c.Privileged)
			}
			if !reflect.DeepEqual(c.Capabilities.Add, []string{"NET_ADMIN"}) || !reflect.DeepEqual(c.Capabilities.Drop, []string{"ALL"}) {
				t.Errorf("caps %+v", c.Capabilities)
			}
			if !reflect.DeepEqual(c.MaskedPaths, []string{"/proc/kcore"}) || !reflect.DeepEqual(c.ReadonlyPaths, []string{"/proc/sys"}) {
				t.Errorf("masked %v readonly %v", c.MaskedPaths, c.ReadonlyPaths)
			}
			if c.Seccomp.Kind != spec.SeccompRuntimeDefault || c.AppArmor != (spec.AppArmor{Kind: spec.AppArmorLocalhost, Profile: "prof"}) {
				t.Errorf("seccomp %+v apparmor %+v", c.Seccomp, c.AppArmor)
			}
		}},
		{"deprecated seccomp path localhost", func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.SeccompProfilePath = "localhost//etc/prof.json"
		}, func(t *testing.T, c spec.Container) {
			if c.Seccomp != (spec.Seccomp{Kind: spec.SeccompLocalhost, LocalhostPath: "/etc/prof.json"}) {
				t.Errorf("seccomp %+v", c.Seccomp)
			}
		}},
		{"resources", func(c *runtimeapi.ContainerConfig) {
			c.Linux.Resources = &runtimeapi.LinuxContainerResources{
				CpuPeriod: 100000, CpuQuota: 50000, CpuShares: 512, MemoryLimitInBytes: 64 << 20,
				OomScoreAdj: 500, CpusetCpus: "0", CpusetMems: "0", MemorySwapLimitInBytes: 128 << 20,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
				Unified:        map[string]string{"memory.high": "1"},
			}
		}, func(t *testing.T, c spec.Container) {
			want := spec.Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, CpusetCpus: "0", CpusetMems: "0",
				MemoryLimit: 64 << 20, MemorySwap: ptr(int64(128 << 20)), HugepageLimits: []spec.HugepageLimit{{PageSize: "2MB", Limit: 1 << 21}},
				Unified: map[string]string{"memory.high": "1"}}
			if !reflect.DeepEqual(c.Resources, want) || c.OOMScoreAdj == nil || *c.OOMScoreAdj != 500 {
				t.Errorf("resources %+v oom %v", c.Resources, c.OOMScoreAdj)
			}
		}},
		{"mounts sorted by depth with propagation and rro", func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{
				{ContainerPath: "/a/b/c", HostPath: "/h1", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL, SelinuxRelabel: true},
				{ContainerPath: "/a", HostPath: "/h2", Readonly: true, RecursiveReadOnly: true},
				{ContainerPath: "/a/b", HostPath: "/h3", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
			}
		}, func(t *testing.T, c spec.Container) {
			want := []spec.Mount{
				{Source: "/h2", Destination: "/a", ReadOnly: true, RecursiveReadOnly: true},
				{Source: "/h3", Destination: "/a/b", Propagation: spec.PropagationHostToContainer},
				{Source: "/h1", Destination: "/a/b/c", Propagation: spec.PropagationBidirectional},
			}
			if !reflect.DeepEqual(c.Mounts, want) {
				t.Errorf("mounts = %+v\nwant %+v", c.Mounts, want)
			}
		}},
		{"tty", func(c *runtimeapi.ContainerConfig) { c.Tty = true }, func(t *testing.T, c spec.Container) {
			if !c.Terminal {
				t.Error("no terminal")
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := containerSpec(baseInput(tc.mod))
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, c)
		})
	}
}

func TestContainerSpecInvalid(t *testing.T) {
	for name, mod := range map[string]func(*runtimeapi.ContainerConfig){
		"relative mount": func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "rel", HostPath: "/h"}}
		},
		"mount without source": func(c *runtimeapi.ContainerConfig) { c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x"}} },
		"rro without readonly": func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/h", RecursiveReadOnly: true}}
		},
		"rro with rshared": func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/h", Readonly: true, RecursiveReadOnly: true, Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}}
		},
		"run_as_group alone": func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 1}
		},
		"negative uid": func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsUser = &runtimeapi.Int64Value{Value: -1}
		},
		"relative seccomp": func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "rel.json"}
		},
		"unknown seccomp path": func(c *runtimeapi.ContainerConfig) { c.Linux.SecurityContext.SeccompProfilePath = "bogus" },
	} {
		t.Run(name, func(t *testing.T) {
			_, err := containerSpec(baseInput(mod))
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("err = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestStopSignal(t *testing.T) {
	for _, tc := range []struct {
		req   runtimeapi.Signal
		image string
		want  syscall.Signal
	}{
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "", syscall.SIGTERM},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "SIGQUIT", syscall.SIGQUIT},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "usr1", syscall.SIGUSR1},
		{runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT, "9", syscall.SIGKILL},
		{runtimeapi.Signal_SIGNAL_SIGINT, "SIGQUIT", syscall.SIGINT},
	} {
		got, err := stopSignal(&runtimeapi.ContainerConfig{StopSignal: tc.req}, ocispec.ImageConfig{StopSignal: tc.image})
		if err != nil || got != tc.want {
			t.Errorf("stopSignal(%v, %q) = %v, %v; want %v", tc.req, tc.image, got, err, tc.want)
		}
		if back := criSignal(got); tc.req != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT && back != tc.req {
			t.Errorf("criSignal(%v) = %v, want %v", got, back, tc.req)
		}
	}
	if _, err := stopSignal(&runtimeapi.ContainerConfig{}, ocispec.ImageConfig{StopSignal: "SIGBOGUS"}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("unknown signal: %v", err)
	}
}
