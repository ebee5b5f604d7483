package cni

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/types"
)

func TestDecodeResult(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		want Result
		bad  bool
	}{
		{
			name: "bridge 1.0.0 keeps only the pod interface",
			raw: `{"cniVersion":"1.0.0",
				"interfaces":[{"name":"cni0","mac":"aa:aa:aa:aa:aa:aa"},{"name":"veth1","mac":"bb:bb:bb:bb:bb:bb"},
					{"name":"eth0","mac":"cc:cc:cc:cc:cc:cc","sandbox":"/run/berth/netns/p"}],
				"ips":[{"address":"10.88.0.1/16","interface":0},{"address":"10.88.0.9/16","gateway":"10.88.0.1","interface":2}],
				"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`,
			want: Result{Interface: "eth0", MAC: "cc:cc:cc:cc:cc:cc", IPs: []IPConfig{
				{Address: netip.MustParsePrefix("10.88.0.9/16"), Gateway: netip.MustParseAddr("10.88.0.1")},
			}},
		},
		{
			name: "an interface named eth0 outside the sandbox is not the pod's",
			raw: `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],
				"ips":[{"address":"10.88.0.9/16","interface":0}]}`,
			want: Result{Interface: "eth0"},
		},
		{
			name: "dual stack: IPv4 first, family order kept",
			raw: `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"x"}],
				"ips":[{"address":"fd00::9/64","interface":0},{"address":"10.1.0.9/24","interface":0},{"address":"fd00::a/64","interface":0}]}`,
			want: Result{Interface: "eth0", IPs: []IPConfig{
				{Address: netip.MustParsePrefix("10.1.0.9/24")},
				{Address: netip.MustParsePrefix("fd00::9/64")},
				{Address: netip.MustParsePrefix("fd00::a/64")},
			}},
		},
		{
			name: "0.4.0 with version fields",
			raw: `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"x"}],
				"ips":[{"version":"4","address":"10.2.0.9/24","gateway":"10.2.0.1","interface":0}],
				"dns":{"nameservers":["10.2.0.10"],"search":["svc"],"options":["ndots:5"]}}`,
			want: Result{Interface: "eth0", IPs: []IPConfig{
				{Address: netip.MustParsePrefix("10.2.0.9/24"), Gateway: netip.MustParseAddr("10.2.0.1")},
			}, DNS: DNS{Servers: []string{"10.2.0.10"}, Searches: []string{"svc"}, Options: []string{"ndots:5"}}},
		},
		{
			name: "0.2.0 has no interfaces: addresses kept",
			raw:  `{"cniVersion":"0.2.0","ip4":{"ip":"10.3.0.9/24","gateway":"10.3.0.1"}}`,
			want: Result{Interface: "eth0", IPs: []IPConfig{
				{Address: netip.MustParsePrefix("10.3.0.9/24"), Gateway: netip.MustParseAddr("10.3.0.1")},
			}},
		},
		{name: "not JSON", raw: `{"cniVersion":`, bad: true},
		{name: "unknown version", raw: `{"cniVersion":"9.9.9"}`, bad: true},
		{name: "bad address", raw: `{"cniVersion":"1.0.0","ips":[{"address":"10.0.0/8"}]}`, bad: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeResult([]byte(tc.raw), "eth0")
			if tc.bad {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("decodeResult = %+v, %v; want InvalidArgument", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err   error
		class func(error) bool
	}{
		{types.NewError(types.ErrTryAgainLater, "busy", ""), errdefs.IsUnavailable},
		{types.NewError(types.ErrIncompatibleCNIVersion, "old", ""), errdefs.IsFailedPrecondition},
		{types.NewError(types.ErrInvalidNetworkConfig, "bad", ""), errdefs.IsInvalidArgument},
		{types.NewError(types.ErrUnknownContainer, "who", ""), errdefs.IsNotFound},
		{types.NewError(types.ErrInternal, "oops", ""), errdefs.IsUnknown},
		{fmt.Errorf("plugin x failed (add): %w", types.NewError(types.ErrTryAgainLater, "busy", "")), errdefs.IsUnavailable},
		{errors.New("exec: broken"), errdefs.IsUnknown},
	} {
		got := classify(tc.err)
		if !tc.class(got) || !errors.Is(got, tc.err) {
			t.Errorf("classify(%v) = %v: wrong class or cause lost", tc.err, got)
		}
	}
	if classify(nil) != nil {
		t.Error("classify(nil) != nil")
	}
}

// FuzzDecodeResult feeds arbitrary plugin output to the result decoder: it
// must never panic, and what it accepts must be well-formed.
func FuzzDecodeResult(f *testing.F) {
	for _, seed := range []string{
		`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"x"}],"ips":[{"address":"10.88.0.9/16","gateway":"10.88.0.1","interface":0}]}`,
		`{"cniVersion":"1.0.0","ips":[{"address":"fd00::1/64","interface":7}]}`,
		`{"cniVersion":"1.0.0","ips":[{"address":"::ffff:10.0.0.1/120","interface":-1}]}`,
		`{"cniVersion":"0.4.0","ips":[{"version":"6","address":"10.0.0.1/8"}]}`,
		`{"cniVersion":"0.3.1","interfaces":[null],"ips":[null]}`,
		`{"cniVersion":"0.2.0","ip4":{"ip":"10.3.0.9/24"},"ip6":{"ip":"fd00::9/64"}}`,
		`{}`,
	} {
		f.Add([]byte(seed), "eth0")
	}
	f.Fuzz(func(t *testing.T, raw []byte, ifName string) {
		res, err := decodeResult(raw, ifName)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("error of class other than InvalidArgument: %v", err)
			}
			return
		}
		seen6 := false
		for _, ip := range res.IPs {
			if !ip.Address.IsValid() || ip.Address.Addr().Is4In6() {
				t.Fatalf("invalid or v4-mapped address %v", ip.Address)
			}
			if ip.Address.Addr().Is6() {
				seen6 = true
			} else if seen6 {
				t.Fatalf("IPv4 after IPv6 in %v", res.IPs)
			}
		}
	})
}
