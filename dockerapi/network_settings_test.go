package dockerapi

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/berth-dev/berth/engine/network"
)

func TestNetworkSettingsJSON(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	s := network.Settings{
		SandboxKey: "/run/berth/ns/net/" + id,
		Endpoints: []network.Endpoint{
			{NetworkID: "n0", NetworkName: "bridge", EndpointID: "e0", MAC: "02:42:ac:11:00:02",
				IPv4: netip.MustParsePrefix("172.17.0.2/16"), Gateway: netip.MustParseAddr("172.17.0.1")},
			{NetworkID: "n1", NetworkName: "app", EndpointID: "e1", IPv4: netip.MustParsePrefix("10.0.0.2/24"),
				Config: network.EndpointConfig{Aliases: []string{"www"}}, DNSNames: []string{"web", "www", id[:12]}},
		},
	}
	compose1 := false
	get := func(version string) map[string]any {
		b, err := json.Marshal(networkSettingsJSON(s, id, version, compose1))
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	aliases := func(m map[string]any) string {
		a, _ := json.Marshal(m["Networks"].(map[string]any)["app"].(map[string]any)["Aliases"])
		return string(a)
	}

	latest := get("")
	if _, ok := latest["IPAddress"]; ok {
		t.Errorf("latest API has the legacy IPAddress: %v", latest)
	}
	if latest["SandboxID"] != id || aliases(latest) != `["www"]` {
		t.Errorf("latest: %v", latest)
	}
	v151 := get("1.51")
	if v151["IPAddress"] != "172.17.0.2" || v151["Gateway"] != "172.17.0.1" || v151["MacAddress"] != "02:42:ac:11:00:02" || v151["IPPrefixLen"] != 16.0 || v151["EndpointID"] != "e0" {
		t.Errorf("1.51 legacy fields: %v", v151)
	}
	v144 := get("1.44")
	if aliases(v144) != `["www","`+id[:12]+`"]` {
		t.Errorf("1.44 aliases %s, want the short ID added", aliases(v144))
	}
	v141 := get("1.41")
	app := v141["Networks"].(map[string]any)["app"].(map[string]any)
	if app["DNSNames"] != nil || !strings.Contains(aliases(v141), id[:12]) {
		t.Errorf("1.41 endpoint: %v", app)
	}
	// docker-compose 1.x gets the short ID at any version (else it
	// reconnects every container before its start).
	compose1 = true
	if got := aliases(get("")); got != `["www","`+id[:12]+`"]` {
		t.Errorf("aliases to docker-compose 1.x at the latest API: %s, want the short ID added", got)
	}
	compose1 = false
	// A container not on the default network: empty legacy fields.
	s.Endpoints = s.Endpoints[1:]
	if v := get("1.41"); v["IPAddress"] != "" || v["Gateway"] != "" {
		t.Errorf("legacy fields of a container off the default network: %v", v)
	}
}
