package network

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	dnet "github.com/moby/moby/api/types/network"
)

func TestConflist(t *testing.T) {
	m := &Manager{cfg: Config{Root: "/r"}}
	n := &Network{ID: "0123456789abcdef0123", Name: "app", Bridge: "br-x", MTU: 1400, Masquerade: true, IPAM: IPAM{Config: []IPAMConfig{
		{Subnet: netip.MustParsePrefix("10.5.0.0/16"), IPRange: netip.MustParsePrefix("10.5.1.0/24"), Gateway: netip.MustParseAddr("10.5.0.1")},
		{Subnet: netip.MustParsePrefix("fd00:5::/64"), Gateway: netip.MustParseAddr("fd00:5::1")},
	}}}
	type conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string
		Plugins    []struct {
			Type         string
			Bridge       string
			IPMasq       bool `json:"ipMasq"`
			MTU          int
			Capabilities map[string]bool
			IPAM         struct {
				Type    string
				DataDir string `json:"dataDir"`
				Ranges  [][]map[string]string
				Routes  []map[string]string
			}
		}
	}
	parse := func(b []byte) conf {
		var c conf
		if err := json.Unmarshal(b, &c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	b, err := m.conflist(n, variant{gateway: true})
	if err != nil {
		t.Fatal(err)
	}
	c := parse(b)
	if c.CNIVersion != "1.0.0" || c.Name != "berth-0123456789ab" || len(c.Plugins) != 1 || c.Plugins[0].Type != "bridge" {
		t.Fatalf("conflist %s", b)
	}
	br := c.Plugins[0]
	if br.Bridge != "br-x" || br.IPMasq || br.MTU != 1400 || !br.Capabilities["ips"] || !br.Capabilities["mac"] || br.IPAM.Type != "host-local" || br.IPAM.DataDir != "/r/ipam" {
		t.Errorf("bridge plugin %+v", br)
	}
	if r := br.IPAM.Ranges; len(r) != 2 || r[0][0]["rangeStart"] != "10.5.1.1" || r[0][0]["rangeEnd"] != "10.5.1.254" || r[1][0]["subnet"] != "fd00:5::/64" {
		t.Errorf("ranges %v", r)
	}
	if r := br.IPAM.Routes; len(r) != 2 || r[0]["dst"] != "0.0.0.0/0" || r[1]["dst"] != "::/0" {
		t.Errorf("routes of the gateway variant %v", r)
	}
	c = parse(must(m.conflist(n, variant{})))
	if r := c.Plugins[0].IPAM.Routes; len(r) != 0 || len(c.Plugins) != 1 {
		t.Errorf("a second network: routes %v, %d plugins; want no routes, bridge alone", r, len(c.Plugins))
	}
	n.Internal = true
	c = parse(must(m.conflist(n, variant{gateway: true})))
	if len(c.Plugins) != 1 || len(c.Plugins[0].IPAM.Routes) != 0 {
		t.Errorf("internal network's conflist: %+v", c)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestCheckIPAM(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	for _, tc := range []struct {
		name string
		cfg  []IPAMConfig
		ipv6 bool
		msg  string
	}{
		{"ok", []IPAMConfig{{Subnet: p("10.0.0.0/24"), IPRange: p("10.0.0.128/25"), Gateway: a("10.0.0.254")}}, false, ""},
		{"unmasked subnet is masked", []IPAMConfig{{Subnet: p("10.0.0.7/24")}}, false, ""},
		{"v6 with --ipv6", []IPAMConfig{{Subnet: p("10.0.0.0/24")}, {Subnet: p("fd00::/64")}}, true, ""},
		{"v6 without --ipv6", []IPAMConfig{{Subnet: p("fd00::/64")}}, false, "needs --ipv6"},
		{"--ipv6 without a v6 subnet", []IPAMConfig{{Subnet: p("10.0.0.0/24")}}, true, "--ipv6 needs"},
		{"two v4", []IPAMConfig{{Subnet: p("10.0.0.0/24")}, {Subnet: p("10.0.1.0/24")}}, false, "one IPv4 subnet"},
		{"too small", []IPAMConfig{{Subnet: p("10.0.0.0/31")}}, false, "too small"},
		{"gateway outside", []IPAMConfig{{Subnet: p("10.0.0.0/24"), Gateway: a("10.0.1.1")}}, false, "not inside"},
		{"range outside", []IPAMConfig{{Subnet: p("10.0.0.0/24"), IPRange: p("10.0.0.0/23")}}, false, "not inside"},
		{"range of the other family", []IPAMConfig{{Subnet: p("10.0.0.0/24"), IPRange: p("fd00::/120")}}, false, "not inside"},
		{"aux outside", []IPAMConfig{{Subnet: p("10.0.0.0/24"), AuxAddress: map[string]netip.Addr{"x": a("10.9.0.1")}}}, false, "auxiliary"},
		{"range without subnet", []IPAMConfig{{IPRange: p("10.0.0.0/25")}}, false, "needs a subnet"},
	} {
		err := checkIPAM(tc.cfg, tc.ipv6)
		if tc.msg == "" && err != nil || tc.msg != "" && (!errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.msg)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"app-net", "a", "proj_default", "a.b", "A1"} {
		if err := validateName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", " ", "-a", ".a", "a/b", "a b", "a:b", strings.Repeat("a", 129), "é"} {
		if err := validateName(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("%q: %v, want invalid", bad, err)
		}
	}
}

func TestPorts(t *testing.T) {
	for s, want := range map[string][2]uint16{"": {0, 0}, "8080": {8080, 8080}, "8000-8010": {8000, 8010}, "0": {0, 0}} {
		lo, hi, err := parseHostPort(s)
		if err != nil || lo != want[0] || hi != want[1] {
			t.Errorf("parseHostPort(%q) = %d, %d, %v", s, lo, hi, err)
		}
	}
	for _, bad := range []string{"x", "9-1", "70000", "1-x", "-5"} {
		if _, _, err := parseHostPort(bad); !errdefs.IsInvalidArgument(err) {
			t.Errorf("parseHostPort(%q): %v", bad, err)
		}
	}
	for s, want := range map[string]Port{"80": {80, "tcp"}, "53/UDP": {53, "udp"}, "9/sctp": {9, "sctp"}} {
		if p, err := ParsePort(s); err != nil || p != want {
			t.Errorf("ParsePort(%q) = %v, %v", s, p, err)
		}
	}
	for _, bad := range []string{"", "0", "x/tcp", "80/icmp", "70000"} {
		if _, err := ParsePort(bad); err == nil {
			t.Errorf("ParsePort(%q) accepted", bad)
		}
	}
	keys, bind, err := wantedPorts(&Container{
		PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: "8080"}}},
		ExposedPorts: []Port{{80, "tcp"}, {443, "tcp"}, {53, "udp"}},
		PublishAll:   true,
	})
	if err != nil || !slices.Equal(keys, []Port{{53, "udp"}, {80, "tcp"}, {443, "tcp"}}) || bind[Port{80, "tcp"}][0].HostPort != "8080" || bind[Port{443, "tcp"}][0].HostPort != "" {
		t.Errorf("wantedPorts = %v %v %v", keys, bind, err)
	}
}

func TestSplitRule(t *testing.T) {
	got, err := splitRule(`BERTH-ISOLATION-1 -i br-x ! -o br-x -m comment --comment "berth 1 2" -j DROP`)
	want := []string{"BERTH-ISOLATION-1", "-i", "br-x", "!", "-o", "br-x", "-m", "comment", "--comment", "berth 1 2", "-j", "DROP"}
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("splitRule = %q, %v", got, err)
	}
	got, _ = splitRule(`POSTROUTING -s 10.0.0.2/32 -m comment --comment "name: \"berth-x\" id: \"abc\"" -j CNI-1`)
	if got[6] != `name: "berth-x" id: "abc"` {
		t.Errorf("escaped quotes: %q", got)
	}
	if _, err := splitRule(`X --comment "open`); err == nil {
		t.Error("unbalanced quotes accepted")
	}
}

func TestRangeBounds(t *testing.T) {
	for p, want := range map[string][2]string{
		"10.0.0.0/24":   {"10.0.0.1", "10.0.0.254"},
		"10.0.1.128/25": {"10.0.1.129", "10.0.1.254"},
		"fd00::/120":    {"fd00::1", "fd00::ff"},
	} {
		a, b := rangeBounds(netip.MustParsePrefix(p))
		if a.String() != want[0] || b.String() != want[1] {
			t.Errorf("rangeBounds(%s) = %s, %s", p, a, b)
		}
	}
	if got := addOffset(netip.MustParseAddr("10.0.255.0"), 256); got.String() != "10.1.0.0" {
		t.Errorf("addOffset = %s", got)
	}
}

// TestFiles checks /etc/hosts and /etc/resolv.conf as Docker writes them.
func TestFiles(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.53\nnameserver 192.0.2.53\nsearch corp.example\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	def := &Network{ID: "d", Name: NameBridge, Driver: DriverBridge, IPAM: IPAM{Config: []IPAMConfig{{Subnet: netip.MustParsePrefix("172.17.0.0/16"), Gateway: netip.MustParseAddr("172.17.0.1")}}}}
	app := &Network{ID: "a", Name: "app", Driver: DriverBridge, IPAM: IPAM{Config: []IPAMConfig{{Subnet: netip.MustParsePrefix("10.7.0.0/24"), Gateway: netip.MustParseAddr("10.7.0.1")}}}}
	m := &Manager{cfg: Config{ResolvConf: resolv}, networks: map[string]*Network{"d": def, "a": app}, containers: map[string]*ctrState{}}
	db := &ctrState{rec: containerRecord{Container: Container{ID: "dbid0000000000", Name: "db"}, Endpoints: []endpointRecord{{NetworkID: "d", EndpointID: "e", IPv4: netip.MustParsePrefix("172.17.0.5/16")}}}}
	m.containers["dbid0000000000"] = db
	web := &ctrState{rec: containerRecord{
		Container: Container{ID: "webid000000000", Name: "web", Hostname: "w", Domainname: "example.org", ExtraHosts: []string{"gw:host-gateway", "v6:[fd00::1]"}, Links: []Link{{Target: "db", Alias: "database"}}},
		Endpoints: []endpointRecord{{NetworkID: "d", EndpointID: "e2", IPv4: netip.MustParsePrefix("172.17.0.6/16")}},
	}}
	m.containers["webid000000000"] = web
	hosts := string(m.hostsFile(web))
	for _, want := range []string{hostsHeader, "172.17.0.1\tgw\n", "fd00::1\tv6\n", "172.17.0.5\tdatabase db dbid00000000\n", "172.17.0.6\tw.example.org w\n"} {
		if !strings.Contains(hosts, want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	// Default network: the host's servers but the loopback one, its search
	// and options.
	if got, want := string(m.resolvConf(web)), "search corp.example\nnameserver 192.0.2.53\noptions ndots:2\n"; got != want {
		t.Errorf("default network resolv.conf %q, want %q", got, want)
	}
	web.rec.Container.DNS = []netip.Addr{netip.MustParseAddr("9.9.9.9")}
	web.rec.Container.DNSSearch = []string{"a.example"}
	web.rec.Container.DNSOptions = []string{"ndots:5", "rotate"}
	if got, want := string(m.resolvConf(web)), "search a.example\nnameserver 9.9.9.9\noptions ndots:5 rotate\n"; got != want {
		t.Errorf("--dns resolv.conf %q, want %q", got, want)
	}
	// A user network: its gateway, ndots:0; --dns only feeds the
	// responder's forwarding.
	web.rec.Endpoints = []endpointRecord{{NetworkID: "a", EndpointID: "e3", IPv4: netip.MustParsePrefix("10.7.0.9/24")}}
	web.rec.Container.DNSOptions = nil
	if got, want := string(m.resolvConf(web)), "search a.example\nnameserver 10.7.0.1\noptions ndots:0\n"; got != want {
		t.Errorf("user network resolv.conf %q, want %q", got, want)
	}
}

func TestDockerConversions(t *testing.T) {
	cfg := &container.Config{Hostname: "h", ExposedPorts: dnet.PortSet{dnet.MustParsePort("80/tcp"): {}, dnet.MustParsePort("53/udp"): {}}}
	hc := &container.HostConfig{
		NetworkMode:     "app",
		PublishAllPorts: true,
		PortBindings:    dnet.PortMap{dnet.MustParsePort("80/tcp"): {{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: "8080"}}},
		DNS:             []netip.Addr{netip.MustParseAddr("9.9.9.9")},
		ExtraHosts:      []string{"a:1.2.3.4"},
		Links:           []string{"/db:/web/database", "cache"},
	}
	nc := &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{"app": {
		Aliases: []string{"www"}, IPAMConfig: &dnet.EndpointIPAMConfig{IPv4Address: netip.MustParseAddr("10.0.0.9")},
		MacAddress: dnet.HardwareAddr{2, 0, 0, 0, 0, 1},
	}}}
	c, err := DockerContainer("id", "/web", cfg, hc, nc)
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "web" || c.Mode != "app" || !c.PublishAll || !slices.Equal(c.ExposedPorts, []Port{{53, "udp"}, {80, "tcp"}}) {
		t.Errorf("container %+v", c)
	}
	if b := c.PortBindings[Port{80, "tcp"}]; len(b) != 1 || b[0].HostIP.String() != "127.0.0.1" || b[0].HostPort != "8080" {
		t.Errorf("bindings %+v", c.PortBindings)
	}
	if !slices.Equal(c.Links, []Link{{"db", "database"}, {"cache", "cache"}}) {
		t.Errorf("links %+v", c.Links)
	}
	d, err := DockerContainer("id", "x", nil, &container.HostConfig{NetworkMode: "default"}, &dnet.NetworkingConfig{EndpointsConfig: map[string]*dnet.EndpointSettings{"default": {}}})
	if _, ok := d.Networks["bridge"]; err != nil || !ok {
		t.Errorf("the CLI's endpoint keyed \"default\" is the bridge network's: %+v %v", d.Networks, err)
	}
	if e := c.Networks["app"]; e.IPv4Address.String() != "10.0.0.9" || e.MacAddress != "02:00:00:00:00:01" || !slices.Equal(e.Aliases, []string{"www"}) {
		t.Errorf("endpoint config %+v", e)
	}

	s := Settings{
		SandboxKey:   "/run/berth/ns/net/x",
		ExposedPorts: []Port{{80, "tcp"}, {443, "tcp"}},
		Ports:        []PortMapping{{Port: Port{80, "tcp"}, HostPort: 8080}, {Port: Port{80, "tcp"}, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9090}},
		Endpoints: []Endpoint{{NetworkID: "n1", NetworkName: "app", EndpointID: "e", MAC: "02:42:ac:11:00:02",
			IPv4: netip.MustParsePrefix("10.0.0.2/24"), Gateway: netip.MustParseAddr("10.0.0.1"), DNSNames: []string{"web"}}},
	}
	ns := s.DockerNetworkSettings("cid")
	if ns.SandboxID != "cid" || ns.SandboxKey != s.SandboxKey {
		t.Errorf("sandbox %q %q", ns.SandboxID, ns.SandboxKey)
	}
	b, _ := json.Marshal(ns.Ports)
	if got := string(b); got != `{"443/tcp":null,"80/tcp":[{"HostIp":"0.0.0.0","HostPort":"8080"},{"HostIp":"127.0.0.1","HostPort":"9090"}]}` {
		t.Errorf("ports %s", got)
	}
	ep := ns.Networks["app"]
	if ep == nil || ep.IPAddress.String() != "10.0.0.2" || ep.IPPrefixLen != 24 || ep.Gateway.String() != "10.0.0.1" || ep.MacAddress.String() != "02:42:ac:11:00:02" || ep.NetworkID != "n1" {
		t.Errorf("endpoint %+v", ep)
	}
	// Stopped: no ports at all.
	if p := (Settings{ExposedPorts: s.ExposedPorts}).DockerPorts(); len(p) != 0 {
		t.Errorf("ports of a stopped container %v", p)
	}
}

func TestRestoreBatch(t *testing.T) {
	rs := parseSave(`# Generated by iptables-nft-save v1.8.9 (nf_tables)
*filter
:INPUT ACCEPT [0:0]
:BERTH-FORWARD - [0:0]
-A FORWARD -j BERTH-ISOLATION-1
-A BERTH-FORWARD -i br-x -m comment --comment "berth 1234" -j ACCEPT
COMMIT
*nat
:BERTH-POSTROUTING - [0:0]
-A BERTH-POSTROUTING -s 10.1.0.0/24 ! -o br-x -m comment --comment "berth 1234" -j MASQUERADE
COMMIT
`)
	if !rs.chains["filter"]["BERTH-FORWARD"] || rs.chains["filter"]["BERTH-POSTROUTING"] || !rs.chains["nat"]["BERTH-POSTROUTING"] {
		t.Errorf("chains %v", rs.chains)
	}
	if !rs.has("filter", "FORWARD -j BERTH-ISOLATION-1") || rs.has("nat", "FORWARD -j BERTH-ISOLATION-1") || len(rs.rules["nat"]) != 1 {
		t.Errorf("rules %v", rs.rules)
	}
	var b batch
	b.add("nat", netRule{"nat", chainNAT, true, []string{"-s", "10.1.0.0/24", "-j", "MASQUERADE"}}.command([]string{"-m", "comment", "--comment", `berth 1 "2" \3`})...)
	b.addLine("filter", "-D"+rs.rules["filter"][1][2:])
	b.add("nat", "-A", "X", "--comment", "")
	want := `*nat
-I BERTH-POSTROUTING 1 -s 10.1.0.0/24 -j MASQUERADE -m comment --comment "berth 1 \"2\" \\3"
-A X --comment ""
COMMIT
*filter
-D BERTH-FORWARD -i br-x -m comment --comment "berth 1234" -j ACCEPT
COMMIT
`
	if got := b.String(); got != want {
		t.Errorf("batch:\n%s\nwant:\n%s", got, want)
	}
	if (&batch{}).String() != "" || !(&batch{}).empty() {
		t.Error("an empty batch is not empty")
	}
	// What the restore reads back is what splitRule reads.
	args, err := splitRule(quoteArgs([]string{"a b", `c"d`, `e\f`, "g"}))
	if err != nil || !slices.Equal(args, []string{"a b", `c"d`, `e\f`, "g"}) {
		t.Errorf("quoteArgs round trip: %q, %v", args, err)
	}
}

func TestPortRules(t *testing.T) {
	ports := []PortMapping{
		{Port: Port{80, "tcp"}, HostPort: 8080},
		{Port: Port{53, "udp"}, HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353},
		{Port: Port{443, "tcp"}, HostIP: netip.MustParseAddr("::1"), HostPort: 8443},
		{Port: Port{81, "tcp"}, HostIP: netip.IPv4Unspecified(), HostPort: 8081},
	}
	join := func(rs [][]string) []string {
		var out []string
		for _, r := range rs {
			out = append(out, strings.Join(r, " "))
		}
		return out
	}
	got := join(portRules(ports, netip.MustParsePrefix("10.5.0.7/24")))
	want := []string{
		"-p tcp --dport 8080 -s 10.5.0.0/24 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8080 -s 127.0.0.1 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8080 -j DNAT --to-destination 10.5.0.7:80",
		"-p udp --dport 5353 -d 127.0.0.1 -s 10.5.0.0/24 -j MARK --set-xmark 0x2000/0x2000",
		"-p udp --dport 5353 -d 127.0.0.1 -s 127.0.0.1 -j MARK --set-xmark 0x2000/0x2000",
		"-p udp --dport 5353 -d 127.0.0.1 -j DNAT --to-destination 10.5.0.7:53",
		"-p tcp --dport 8081 -s 10.5.0.0/24 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8081 -s 127.0.0.1 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8081 -j DNAT --to-destination 10.5.0.7:81",
	}
	if !slices.Equal(got, want) {
		t.Errorf("IPv4 rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	got = join(portRules(ports, netip.MustParsePrefix("fd00:5::7/64")))
	want = []string{
		"-p tcp --dport 8080 -s fd00:5::/64 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8080 -j DNAT --to-destination [fd00:5::7]:80",
		"-p tcp --dport 8443 -d ::1 -s fd00:5::/64 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8443 -d ::1 -j DNAT --to-destination [fd00:5::7]:443",
		"-p tcp --dport 8081 -s fd00:5::/64 -j MARK --set-xmark 0x2000/0x2000",
		"-p tcp --dport 8081 -j DNAT --to-destination [fd00:5::7]:81",
	}
	if !slices.Equal(got, want) {
		t.Errorf("IPv6 rules:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if m := portRulesRE.FindStringSubmatch(`-A BERTH-DNAT -p tcp -m tcp --dport 8080 -m comment --comment "berth 0abc 9f8e" -j DNAT --to-destination 10.5.0.7:80`); m == nil || m[1] != "0abc" || m[2] != "9f8e" {
		t.Errorf("port rule comment read as %q", m)
	}
}
