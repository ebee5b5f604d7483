package cri

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/runtime"
)

func TestRunPodSandboxUserNamespace(t *testing.T) {
	one := []*runtimeapi.IDMapping{{ContainerId: 0, HostId: 1000, Length: 100000}}
	want := &runtime.UserNamespace{
		UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}},
		GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 100000}},
	}
	for _, tc := range []struct {
		name      string
		userns    *runtimeapi.UserNamespace
		supported bool
		want      *runtime.UserNamespace
		wantErr   func(error) bool
	}{
		{name: "none", supported: true},
		{name: "none, unsupported"},
		{name: "node", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "pod", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, supported: true, want: want},
		{name: "pod, unsupported", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: one, Gids: one}, wantErr: errdefs.IsNotImplemented},
		{name: "pod without mappings", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}, supported: true, wantErr: errdefs.IsInvalidArgument},
		{name: "node with mappings", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: one, Gids: one}, supported: true, wantErr: errdefs.IsInvalidArgument},
		{name: "container", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, supported: true, wantErr: errdefs.IsInvalidArgument},
		{name: "target", userns: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, supported: true, wantErr: errdefs.IsInvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := &fakeRuntime{}
			s := NewRuntimeService(withRuntime(RuntimeOptions{Network: &fakeNetwork{}, Images: &fakeSnapshots{}, Features: Features{UserNamespaces: tc.supported}}, rt))
			req := podRequest("p", nil)
			req.Config.Linux = &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: tc.userns},
			}}
			_, err := s.RunPodSandbox(t.Context(), req)
			if tc.wantErr != nil {
				if !tc.wantErr(err) {
					t.Fatalf("err = %v", err)
				}
				if len(rt.calls) != 0 {
					t.Errorf("runtime called on a refused pod: %q", rt.calls)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := rt.sandboxes[0].Config.UserNS; !reflect.DeepEqual(got, tc.want) {
				t.Errorf("runtime user namespace = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestStatusAdvertisesUserNamespaces(t *testing.T) {
	for _, supported := range []bool{false, true} {
		s := NewRuntimeService(withRuntime(RuntimeOptions{Network: &fakeNetwork{}, Features: Features{UserNamespaces: supported}}, &fakeRuntime{}))
		st, err := s.Status(t.Context(), &runtimeapi.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(st.RuntimeHandlers) == 0 {
			t.Fatal("no runtime handlers")
		}
		for _, h := range st.RuntimeHandlers {
			if h.Features.GetUserNamespaces() != supported {
				t.Errorf("handler %q user namespaces = %v, want %v", h.Name, h.Features.GetUserNamespaces(), supported)
			}
		}
	}
}
