package cri

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports the runtime ready only when its shim and berth-runc are
// in place, and the network ready only when the CNI config is usable:
// saying otherwise would make the kubelet schedule pods that cannot start
// or get a network. Runtime handlers and features are
// advertised only as far as they really work here.
func (s *RuntimeService) Status(ctx context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	network := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	switch {
	case s.opts.Network == nil:
		network.Status = false
		network.Reason = "NetworkPluginNotReady"
		network.Message = "Network plugin returns error: berth runs without CNI networking"
	default:
		if ok, why := s.opts.Network.Ready(ctx); !ok {
			network.Status = false
			network.Reason = "NetworkPluginNotReady"
			network.Message = "Network plugin returns error: " + why
		}
	}
	rt := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	switch {
	case s.opts.Health == nil:
		rt.Status = false
		rt.Reason = "RuntimeNotConfigured"
		rt.Message = "berth runs without a container runtime"
	default:
		if err := s.opts.Health.Ready(); err != nil {
			rt.Status = false
			rt.Reason = "RuntimeBinariesMissing"
			rt.Message = err.Error()
		}
	}
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{rt, network}},
		// Berth has one handler, the default ("").
		RuntimeHandlers: []*runtimeapi.RuntimeHandler{{
			Name: "",
			Features: &runtimeapi.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: s.opts.Features.RecursiveReadOnlyMounts,
				UserNamespaces:          s.opts.Features.UserNamespaces,
			},
		}},
		// runtime/spec resolves groups with the Strict policy too.
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	if req.GetVerbose() {
		resp.Info = map[string]string{}
		if s.opts.Config != nil {
			b, err := json.Marshal(s.opts.Config)
			if err != nil {
				return nil, fmt.Errorf("runtime status: encode config: %w", err)
			}
			resp.Info["config"] = string(b)
		}
		if cidr := s.podCIDRValue(); cidr != "" {
			resp.Info["podCIDR"] = cidr
		}
	}
	return resp, nil
}
