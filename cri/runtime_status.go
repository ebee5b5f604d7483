package cri

import (
	"context"
	"encoding/json"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Status reports the runtime ready and the network not ready: there is no
// CNI integration yet, and saying otherwise would make the kubelet schedule
// pods that cannot get a network.
func (s *RuntimeService) Status(_ context.Context, req *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	resp := &runtimeapi.StatusResponse{
		Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
			{Type: runtimeapi.RuntimeReady, Status: true},
			{
				Type:    runtimeapi.NetworkReady,
				Status:  false,
				Reason:  "NetworkPluginNotReady",
				Message: "Network plugin returns error: berth has no CNI networking yet",
			},
		}},
	}
	if req.GetVerbose() && s.opts.Config != nil {
		b, err := json.Marshal(s.opts.Config)
		if err != nil {
			return nil, fmt.Errorf("runtime status: encode config: %w", err)
		}
		resp.Info = map[string]string{"config": string(b)}
	}
	return resp, nil
}
