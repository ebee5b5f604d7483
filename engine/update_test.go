package engine

import (
	"strings"
	"testing"

	"github.com/moby/moby/api/types/container"
)

func TestMergeUpdate(t *testing.T) {
	p := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		name    string
		cur     container.Resources
		auto    bool
		upd     container.UpdateConfig
		want    container.Resources
		restart container.RestartPolicyMode
		err     string
	}{
		{name: "memory with swap", upd: container.UpdateConfig{Resources: container.Resources{Memory: 64 << 20, MemorySwap: 128 << 20}},
			want: container.Resources{Memory: 64 << 20, MemorySwap: 128 << 20}},
		// dockerd refuses a memory limit above the stored memory+swap
		// limit (0 on a container created without one).
		{name: "memory alone, unlimited container", upd: container.UpdateConfig{Resources: container.Resources{Memory: 64 << 20}},
			err: "Memory limit should be smaller than already set memoryswap limit"},
		// Created with -m 32m: memory+swap is 64m, so 48m fits.
		{name: "memory within the implied swap", cur: container.Resources{Memory: 32 << 20},
			upd:  container.UpdateConfig{Resources: container.Resources{Memory: 48 << 20}},
			want: container.Resources{Memory: 48 << 20, MemorySwap: 64 << 20}},
		{name: "memory past the implied swap", cur: container.Resources{Memory: 32 << 20},
			upd: container.UpdateConfig{Resources: container.Resources{Memory: 96 << 20}}, err: "memoryswap"},
		{name: "cpus after a period", cur: container.Resources{CPUPeriod: 100000},
			upd: container.UpdateConfig{Resources: container.Resources{NanoCPUs: 1e9}}, err: "Nano CPUs cannot be updated as CPU Period has already been set"},
		{name: "quota after cpus", cur: container.Resources{NanoCPUs: 1e9},
			upd: container.UpdateConfig{Resources: container.Resources{CPUQuota: 50000}}, err: "CPU Quota cannot be updated as NanoCPUs has already been set"},
		{name: "zero fields keep", cur: container.Resources{CPUShares: 512, CpusetCpus: "0", PidsLimit: p(10)},
			upd:  container.UpdateConfig{Resources: container.Resources{CpusetMems: "0"}},
			want: container.Resources{CPUShares: 512, CpusetCpus: "0", CpusetMems: "0", PidsLimit: p(10)}},
		{name: "pids limit lifted", cur: container.Resources{PidsLimit: p(10)},
			upd:  container.UpdateConfig{Resources: container.Resources{PidsLimit: p(-1)}},
			want: container.Resources{PidsLimit: p(-1)}},
		{name: "restart policy", upd: container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "always"}}, restart: "always"},
		{name: "restart policy of --rm", auto: true, upd: container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "always"}},
			err: "Restart policy cannot be updated because AutoRemove is enabled"},
		{name: "bad restart policy", upd: container.UpdateConfig{RestartPolicy: container.RestartPolicy{Name: "always", MaximumRetryCount: 3}},
			err: "maximum retry count can only be used with 'on-failure'"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hc := &container.HostConfig{Resources: tc.cur, AutoRemove: tc.auto, RestartPolicy: container.RestartPolicy{Name: "no"}}
			err := mergeUpdate(hc, tc.upd)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tc.restart != "" && hc.RestartPolicy.Name != tc.restart {
				t.Errorf("restart policy %q", hc.RestartPolicy.Name)
			}
			got, want := hc.Resources, tc.want
			if got.Memory != want.Memory || got.MemorySwap != want.MemorySwap || got.CPUShares != want.CPUShares || got.CpusetCpus != want.CpusetCpus ||
				got.CpusetMems != want.CpusetMems || got.NanoCPUs != want.NanoCPUs || (got.PidsLimit == nil) != (want.PidsLimit == nil) ||
				(got.PidsLimit != nil && *got.PidsLimit != *want.PidsLimit) {
				t.Errorf("resources = %+v, want %+v", got, want)
			}
		})
	}
}
