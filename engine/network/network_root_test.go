package network

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/miekg/dns"
)

func freePort(t testing.TB) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// files makes a container's hosts and resolv.conf files, as the runtime's
// sandbox has them.
func files(t testing.TB) (string, string) {
	dir := t.TempDir()
	h, r := filepath.Join(dir, "hosts"), filepath.Join(dir, "resolv.conf")
	for _, p := range []string{h, r} {
		if err := os.WriteFile(p, []byte("runtime's content, longer than what replaces it\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return h, r
}

func ctrID() string { return randHex(32) }

func TestRootDefaultBridge(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	def, err := e.m.Get(NameBridge)
	if err != nil {
		t.Fatal(err)
	}
	if def.Bridge != e.cfg.DefaultBridge || def.IPAM.Config[0].Subnet != e.cfg.DefaultSubnet || def.Names() {
		t.Fatalf("default network %+v, want bridge %s on %s without names", def, e.cfg.DefaultBridge, e.cfg.DefaultSubnet)
	}
	if bridgeExists(def.Bridge) {
		t.Fatalf("default bridge %s exists before any container used it", def.Bridge)
	}

	hostPort := freePort(t)
	id := ctrID()
	err = e.m.Register(ctx, Container{
		ID: id, Name: "web", Hostname: "webhost",
		PortBindings: map[Port][]PortBinding{
			{80, "tcp"}: {{HostPort: fmt.Sprint(hostPort)}},
			{81, "tcp"}: {{HostIP: netip.MustParseAddr("127.0.0.1")}},
		},
		ExposedPorts: []Port{{80, "tcp"}, {81, "tcp"}, {82, "tcp"}},
		PublishAll:   true,
		ExtraHosts:   []string{"gw:host-gateway", "other:192.0.2.7"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ns := e.netns("web")
	hostsPath, resolvPath := files(t)
	st, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns, HostsPath: hostsPath, ResolvConfPath: resolvPath})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Endpoints) != 1 {
		t.Fatalf("endpoints %+v", st.Endpoints)
	}
	ep := st.Endpoints[0]
	gw := def.IPAM.Config[0].Gateway
	if ep.NetworkName != NameBridge || ep.IfName != "eth0" || !def.IPAM.Config[0].Subnet.Contains(ep.IPv4.Addr()) || ep.Gateway != gw || ep.MAC == "" || ep.EndpointID == "" || len(ep.DNSNames) != 0 {
		t.Fatalf("endpoint %+v, want eth0 on %s with gateway %s and no DNS names", ep, def.IPAM.Config[0].Subnet, gw)
	}
	if st.SandboxKey != ns {
		t.Errorf("SandboxKey %q, want %q", st.SandboxKey, ns)
	}
	// -p 80 on the given port; -p 127.0.0.1::81 and -P's 82 on picked ones.
	if len(st.Ports) != 3 {
		t.Fatalf("ports %+v, want 3", st.Ports)
	}
	var port81, port82 uint16
	for _, p := range st.Ports {
		switch p.Port.Num {
		case 80:
			if p.HostPort != hostPort || p.HostIP.IsValid() {
				t.Errorf("80/tcp -> %v:%d, want all addresses:%d", p.HostIP, p.HostPort, hostPort)
			}
		case 81:
			port81 = p.HostPort
			if p.HostIP != netip.MustParseAddr("127.0.0.1") || p.HostPort < e.m.cfg.PortMin || p.HostPort > e.m.cfg.PortMax {
				t.Errorf("81/tcp -> %v:%d, want 127.0.0.1 and a port of the ephemeral range", p.HostIP, p.HostPort)
			}
		case 82:
			port82 = p.HostPort
		}
	}
	serve(t, ns, 80)
	serve(t, ns, 81)
	serve(t, ns, 82)
	for _, addr := range []string{
		netip.AddrPortFrom(ep.IPv4.Addr(), 80).String(),
		fmt.Sprintf("127.0.0.1:%d", hostPort),
		fmt.Sprintf("%s:%d", gw, hostPort),
		fmt.Sprintf("127.0.0.1:%d", port81),
		fmt.Sprintf("127.0.0.1:%d", port82),
	} {
		if got, err := dial(t, "", addr); err != nil || got != filepath.Base(ns) {
			t.Errorf("host -> %s: %q, %v", addr, got, err)
		}
	}
	// The ports are held: a host process cannot take them.
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", hostPort)); err == nil {
		l.Close()
		t.Errorf("a host process could bind published port %d", hostPort)
	}

	hosts, _ := os.ReadFile(hostsPath)
	for _, want := range []string{"127.0.0.1\tlocalhost\n", ep.IPv4.Addr().String() + "\twebhost\n", gw.String() + "\tgw\n", "192.0.2.7\tother\n"} {
		if !strings.Contains(string(hosts), want) {
			t.Errorf("hosts lacks %q:\n%s", want, hosts)
		}
	}
	if strings.Contains(string(hosts), "runtime's content") || strings.Contains(string(hosts), "\n\n") {
		t.Errorf("hosts not rewritten whole:\n%q", hosts)
	}
	// The host's only server is loopback: the default bridge's gateway
	// forwards for it.
	resolv, _ := os.ReadFile(resolvPath)
	if want := "search example.test\nnameserver " + gw.String() + "\n"; string(resolv) != want {
		t.Errorf("resolv.conf %q, want %q", resolv, want)
	}
	m, err := lookup(t, ns, gw, "upstream.test", dns.TypeA, "udp")
	if err != nil || !slices.Equal(answers(m), []string{"192.0.2.99"}) {
		t.Errorf("upstream.test through the default bridge's forwarder: %v, %v", m, err)
	}
	// No names on the default bridge.
	if m, err := lookup(t, ns, gw, "web", dns.TypeA, "udp"); err != nil || m.Rcode != dns.RcodeNameError {
		t.Errorf("web on the default bridge: %v, %v; want NXDOMAIN from upstream", m, err)
	}

	nets := e.m.NetworkEndpoints(def.ID)
	if len(nets) != 1 || nets[0].ContainerID != id || nets[0].Name != "web" {
		t.Errorf("network endpoints %+v", nets)
	}

	if err := e.m.Detach(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Detach(ctx, id); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	if _, err := dial(t, "", fmt.Sprintf("127.0.0.1:%d", hostPort)); err == nil {
		t.Error("host port still reaches the container after Detach")
	}
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", hostPort)); err != nil {
		t.Errorf("port %d still held after Detach: %v", hostPort, err)
	} else {
		l.Close()
	}
	st, _ = e.m.Settings(id)
	if len(st.Endpoints) != 1 || st.Endpoints[0].Attached() || len(st.Ports) != 0 || st.SandboxKey != "" {
		t.Errorf("settings after Detach %+v, want the configured endpoint only", st)
	}
	if out := run(t, "ip", "-o", "link", "show", "master", def.Bridge); strings.TrimSpace(out) != "" {
		t.Errorf("veths left on %s: %s", def.Bridge, out)
	}
	// Start again: the configuration held.
	if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
		t.Fatalf("second start: %v", err)
	}
	if err := e.m.Unregister(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Settings(id); !errdefs.IsNotFound(err) {
		t.Errorf("Settings after Unregister: %v", err)
	}
	if left := e.leftovers(); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "\n"))
	}
}

// TestRootDefaultBridgeComesBack: the default network is set up once, at
// its first attach; a later attach finds the bridge gone (an admin, a
// reboot of the network stack) and sets it up again, rules included.
func TestRootDefaultBridgeComesBack(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	def, err := e.m.Get(NameBridge)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := freePort(t)
	id := ctrID()
	if err := e.m.Register(ctx, Container{ID: id, Name: "back", PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: fmt.Sprint(hostPort)}}}}); err != nil {
		t.Fatal(err)
	}
	ns := e.netns("back")
	serve(t, ns, 80)
	for i := 0; i < 2; i++ {
		if _, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: ns}); err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		if got, err := dial(t, "", fmt.Sprintf("127.0.0.1:%d", hostPort)); err != nil || got != filepath.Base(ns) {
			t.Errorf("attach %d: host -> published port: %q, %v", i, got, err)
		}
		if save := run(t, "iptables-save"); !strings.Contains(save, networkMarker(def.ID)) {
			t.Errorf("attach %d: the default network's rules are missing:\n%s", i, save)
		}
		if err := e.m.Detach(ctx, id); err != nil {
			t.Fatal(err)
		}
		// Gone under the manager's feet: its rules with it.
		run(t, "ip", "link", "del", def.Bridge)
		nn := def
		if err := e.m.removeIsolation(&nn); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Unregister(ctx, id); err != nil {
		t.Fatal(err)
	}
	if left := e.leftovers(); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "\n"))
	}
	if save := run(t, "iptables-save"); strings.Contains(save, id) {
		t.Errorf("rules of the container left:\n%s", save)
	}
}

func TestRootPortConflict(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	hostPort := freePort(t)
	bind := map[Port][]PortBinding{{80, "tcp"}: {{HostPort: fmt.Sprint(hostPort)}}}
	a, b := ctrID(), ctrID()
	for _, id := range []string{a, b} {
		if err := e.m.Register(ctx, Container{ID: id, Name: "c" + id[:4], PortBindings: bind}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: a, NetNS: e.netns("a")}); err != nil {
		t.Fatal(err)
	}
	_, err := e.m.Attach(ctx, AttachRequest{ID: b, NetNS: e.netns("b")})
	if !errdefs.IsConflict(err) || !strings.Contains(err.Error(), fmt.Sprintf("Bind for 0.0.0.0:%d failed: port is already allocated", hostPort)) {
		t.Fatalf("second container on port %d: %v, want docker's port-allocated conflict", hostPort, err)
	}
	st, _ := e.m.Settings(b)
	if st.Endpoints[0].Attached() || st.SandboxKey != "" {
		t.Errorf("failed Attach left %+v", st)
	}
	// A port a host process holds is the userland proxy's failure, as
	// Docker words it.
	l, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	d := ctrID()
	if err := e.m.Register(ctx, Container{ID: d, Name: "c" + d[:4], PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: fmt.Sprint(taken)}}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.m.Attach(ctx, AttachRequest{ID: d, NetNS: e.netns("d")})
	if want := fmt.Sprintf("Error starting userland proxy: listen tcp4 0.0.0.0:%d: bind: address already in use", taken); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("a port a host process holds: %v, want %q", err, want)
	}
	// A range picks the next free port.
	c := ctrID()
	if err := e.m.Register(ctx, Container{ID: c, Name: "c", PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: fmt.Sprintf("%d-%d", hostPort, hostPort+5)}}}}); err != nil {
		t.Fatal(err)
	}
	st, err = e.m.Attach(ctx, AttachRequest{ID: c, NetNS: e.netns("c")})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Ports) != 1 || st.Ports[0].HostPort <= hostPort || st.Ports[0].HostPort > hostPort+5 {
		t.Errorf("range binding got %+v", st.Ports)
	}
}

func TestRootUserNetworks(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	// The pool's first /24 is routed on the host: the pick skips it.
	routed := e.routed(0)
	netA, err := e.m.Create(ctx, CreateOptions{Name: "app-" + e.tag, Labels: map[string]string{"x": "y"}})
	if err != nil {
		t.Fatal(err)
	}
	netB, err := e.m.Create(ctx, CreateOptions{Name: "other-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	subA := netA.IPAM.Config[0].Subnet
	if !e.cfg.AddressPools[0].Base.Contains(subA.Addr()) || subA.Bits() != 24 || netA.IPAM.Config[0].Gateway != subA.Addr().Next() || subA == routed {
		t.Fatalf("network A IPAM %+v, want a /24 of the pool but %s, with its first address as gateway", netA.IPAM, routed)
	}
	if subA.Overlaps(netB.IPAM.Config[0].Subnet) {
		t.Fatalf("networks got overlapping subnets %s and %s", subA, netB.IPAM.Config[0].Subnet)
	}
	if !bridgeExists(netA.Bridge) || !strings.HasPrefix(netA.Bridge, "br-") {
		t.Fatalf("bridge %q of network A", netA.Bridge)
	}
	conf, err := os.ReadFile(filepath.Join(e.cfg.confDir(), netA.Name+".conflist"))
	if err != nil || !strings.Contains(string(conf), `"type": "host-local"`) || strings.Contains(string(conf), `"type": "portmap"`) {
		t.Fatalf("conflist: %v\n%s", err, conf)
	}
	gwA, gwB := netA.IPAM.Config[0].Gateway, netB.IPAM.Config[0].Gateway

	type ctr struct {
		id, name string
		ns       string
		nets     map[string]EndpointConfig
		mode     string
		st       Settings
	}
	db := &ctr{name: "db", mode: netA.Name, nets: map[string]EndpointConfig{netA.Name: {Aliases: []string{"database"}}}}
	web := &ctr{name: "web", mode: netA.Name}
	lone := &ctr{name: "lone", mode: netB.Name}
	both := &ctr{name: "both", mode: netA.Name, nets: map[string]EndpointConfig{netB.Name: {}}}
	for _, c := range []*ctr{db, web, lone, both} {
		c.id = ctrID()
		if err := e.m.Register(ctx, Container{ID: c.id, Name: c.name, Hostname: c.id[:12], Mode: c.mode, Networks: c.nets}); err != nil {
			t.Fatal(err)
		}
		c.ns = e.netns(c.name)
		hp, rp := files(t)
		if c.st, err = e.m.Attach(ctx, AttachRequest{ID: c.id, NetNS: c.ns, HostsPath: hp, ResolvConfPath: rp}); err != nil {
			t.Fatal(err)
		}
		serve(t, c.ns, 80)
		if c == both {
			resolv, _ := os.ReadFile(rp)
			if want := "search example.test\nnameserver " + gwA.String() + "\nnameserver " + gwB.String() + "\noptions ndots:0\n"; string(resolv) != want {
				t.Errorf("resolv.conf of a container on two networks %q, want %q", resolv, want)
			}
		}
	}
	ip := func(c *ctr, n Network) netip.Addr {
		ep, ok := c.st.Endpoint(n.Name)
		if !ok {
			t.Fatalf("%s has no endpoint on %s", c.name, n.Name)
		}
		return ep.IPv4.Addr()
	}
	if eps := both.st.Endpoints; len(eps) != 2 || eps[0].IfName != "eth0" || eps[1].IfName != "eth1" || !eps[0].Gateway.IsValid() || eps[1].Gateway.IsValid() {
		t.Errorf("endpoints of a container on two networks: %+v, want eth0 with the gateway and eth1 without", eps)
	}
	if ep, _ := db.st.Endpoint(netA.Name); !slices.Equal(ep.DNSNames, []string{"db", "database", db.id[:12]}) {
		t.Errorf("DNS names of db: %v", ep.DNSNames)
	}

	// Names: a container sees the names of the networks it is on.
	for _, tc := range []struct {
		from   *ctr
		server netip.Addr
		name   string
		want   []string
		rcode  int
	}{
		{web, gwA, "db", []string{ip(db, netA).String()}, dns.RcodeSuccess},
		{web, gwA, "DATABASE.", []string{ip(db, netA).String()}, dns.RcodeSuccess},
		{web, gwA, db.id[:12], []string{ip(db, netA).String()}, dns.RcodeSuccess},
		{web, gwA, "db." + netA.Name, []string{ip(db, netA).String()}, dns.RcodeSuccess},
		{web, gwA, "lone", nil, dns.RcodeNameError},
		{lone, gwB, "db", nil, dns.RcodeNameError},
		{lone, gwB, "both", []string{ip(both, netB).String()}, dns.RcodeSuccess},
		{both, gwA, "lone", []string{ip(lone, netB).String()}, dns.RcodeSuccess},
		{both, gwA, "db", []string{ip(db, netA).String()}, dns.RcodeSuccess},
		{web, gwA, "upstream.test", []string{"192.0.2.99"}, dns.RcodeSuccess},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			m, err := lookup(t, tc.from.ns, tc.server, tc.name, dns.TypeA, proto)
			if err != nil {
				t.Errorf("%s asks %s for %s over %s: %v", tc.from.name, tc.server, tc.name, proto, err)
				continue
			}
			if m.Rcode != tc.rcode || !slices.Equal(answers(m), tc.want) {
				t.Errorf("%s asks %s for %s over %s: rcode %s answers %v, want %s %v", tc.from.name, tc.server, tc.name, proto, dns.RcodeToString[m.Rcode], answers(m), dns.RcodeToString[tc.rcode], tc.want)
			}
		}
	}
	// Each network masquerades its subnet once, and lets its bridge's
	// traffic through FORWARD.
	save := run(t, "iptables-save")
	for _, want := range []string{
		"-A BERTH-POSTROUTING -s " + subA.String() + " ! -o " + netA.Bridge + ` -m comment --comment "berth ` + netA.ID + `" -j MASQUERADE`,
		"-A BERTH-FORWARD -i " + netA.Bridge + ` -m comment --comment "berth ` + netA.ID + `" -j ACCEPT`,
	} {
		if !strings.Contains(save, want) {
			t.Errorf("iptables lacks %q", want)
		}
	}
	// AAAA of an IPv4-only container: NODATA, not a forward.
	if m, err := lookup(t, web.ns, gwA, "db", dns.TypeAAAA, "udp"); err != nil || m.Rcode != dns.RcodeSuccess || len(m.Answer) != 0 {
		t.Errorf("AAAA db: %v, %v; want an empty NOERROR", m, err)
	}
	arpa, _ := dns.ReverseAddr(ip(db, netA).String())
	if m, err := lookup(t, web.ns, gwA, arpa, dns.TypePTR, "udp"); err != nil || !slices.Equal(answers(m), []string{"db." + netA.Name + "."}) {
		t.Errorf("PTR of db: %v, %v", m, err)
	}

	// Reachability: same network yes, across networks no, both yes.
	for _, tc := range []struct {
		from, to *ctr
		on       Network
		ok       bool
	}{
		{web, db, netA, true},
		{lone, db, netA, false},
		{db, lone, netB, false},
		{both, db, netA, true},
		{both, lone, netB, true},
		{lone, both, netB, true},
	} {
		got, err := dial(t, tc.from.ns, netip.AddrPortFrom(ip(tc.to, tc.on), 80).String())
		if tc.ok && (err != nil || got != filepath.Base(tc.to.ns)) {
			t.Errorf("%s -> %s on %s: %q, %v; want reachable", tc.from.name, tc.to.name, tc.on.Name, got, err)
		}
		if !tc.ok && err == nil {
			t.Errorf("%s -> %s on %s: reachable across networks", tc.from.name, tc.to.name, tc.on.Name)
		}
	}

	// A network in use is not removed.
	if err := e.m.Remove(ctx, netA.Name); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "has active endpoints") {
		t.Errorf("Remove of a network in use: %v", err)
	}
	if eps := e.m.NetworkEndpoints(netA.ID); len(eps) != 3 {
		t.Errorf("network A endpoints %+v, want db, web and both", eps)
	}

	// Tear down: containers, then networks; nothing stays.
	for _, c := range []*ctr{db, web, lone, both} {
		if err := e.m.Unregister(ctx, c.id); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []Network{netA, netB} {
		if err := e.m.Remove(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
	}
	if left := e.leftovers(netA, netB); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "\n"))
	}
	for _, want := range []string{
		"network create " + netA.Name,
		"network connect " + netA.Name + " " + db.id,
		"network connect " + netB.Name + " " + both.id,
		"network disconnect " + netA.Name + " " + db.id,
		"network destroy " + netB.Name,
	} {
		if !e.events.has(want) {
			t.Errorf("no event %q in %v", want, e.events.log)
		}
	}
	if _, err := e.m.Get(netA.Name); !errdefs.IsNotFound(err) {
		t.Errorf("Get after Remove: %v", err)
	}
}

func TestRootConnectDisconnect(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	netA, err := e.m.Create(ctx, CreateOptions{Name: "a-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	netB, err := e.m.Create(ctx, CreateOptions{Name: "b-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{
		Subnet: netip.MustParsePrefix(fmt.Sprintf("10.%d.245.0/24", e.cfg.AddressPools[0].Base.Addr().As4()[1])),
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	gwA := netA.IPAM.Config[0].Gateway
	// Created, connected before it starts (compose's way): holds at start.
	early, late := ctrID(), ctrID()
	if err := e.m.Register(ctx, Container{ID: early, Name: "early", Mode: netA.Name}); err != nil {
		t.Fatal(err)
	}
	staticIP := netip.MustParseAddr(strings.TrimSuffix(netB.IPAM.Config[0].Subnet.Addr().String(), "0") + "77")
	if err := e.m.Connect(ctx, early, netB.Name, EndpointConfig{Aliases: []string{"e2"}, IPv4Address: staticIP}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Connect(ctx, early, netB.ID[:10], EndpointConfig{}); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "already exists in network") {
		t.Errorf("connect twice: %v", err)
	}
	nsEarly := e.netns("early")
	hp, rp := files(t)
	st, err := e.m.Attach(ctx, AttachRequest{ID: early, NetNS: nsEarly, HostsPath: hp, ResolvConfPath: rp})
	if err != nil {
		t.Fatal(err)
	}
	if ep, ok := st.Endpoint(netB.Name); !ok || ep.IPv4.Addr() != staticIP || ep.IfName != "eth1" {
		t.Fatalf("endpoint on B %+v, want eth1 with %s", ep, staticIP)
	}

	if err := e.m.Register(ctx, Container{ID: late, Name: "late", Mode: netA.Name}); err != nil {
		t.Fatal(err)
	}
	nsLate := e.netns("late")
	if _, err := e.m.Attach(ctx, AttachRequest{ID: late, NetNS: nsLate}); err != nil {
		t.Fatal(err)
	}
	serve(t, nsEarly, 80)
	// Live connect of late to B: eth1 appears, B's names resolve.
	if err := e.m.Connect(ctx, late, netB.Name, EndpointConfig{}); err != nil {
		t.Fatal(err)
	}
	if out := run(t, "ip", "-n", filepath.Base(nsLate), "-o", "-4", "addr", "show", "eth1"); !strings.Contains(out, strings.TrimSuffix(netB.IPAM.Config[0].Subnet.Addr().String(), "0")) {
		t.Errorf("no address of B on eth1 after a live connect: %s", out)
	}
	if m, err := lookup(t, nsLate, gwA, "e2", dns.TypeA, "udp"); err != nil || !slices.Equal(answers(m), []string{staticIP.String()}) {
		t.Errorf("e2 after connect: %v, %v", m, err)
	}
	if got, err := dial(t, nsLate, netip.AddrPortFrom(staticIP, 80).String()); err != nil || got != filepath.Base(nsEarly) {
		t.Errorf("late -> early on B after connect: %q, %v", got, err)
	}
	// Live disconnect of early from B: eth1 goes, the alias too, and
	// resolv.conf follows.
	if err := e.m.Disconnect(ctx, early, netB.Name, false); err != nil {
		t.Fatal(err)
	}
	if out, err := runErr("ip", "-n", filepath.Base(nsEarly), "link", "show", "eth1"); err == nil {
		t.Errorf("eth1 still in early after disconnect: %s", out)
	}
	if m, err := lookup(t, nsLate, gwA, "e2", dns.TypeA, "udp"); err != nil || len(m.Answer) != 0 {
		t.Errorf("e2 after disconnect: %v, %v; want no answer", m, err)
	}
	resolv, _ := os.ReadFile(rp)
	if strings.Contains(string(resolv), netB.IPAM.Config[0].Gateway.String()) {
		t.Errorf("resolv.conf still names B's resolver after disconnect:\n%s", resolv)
	}
	if err := e.m.Disconnect(ctx, early, netB.Name, false); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "is not connected to network") {
		t.Errorf("disconnect twice: %v", err)
	}
	// Detach and start again: late keeps B.
	if err := e.m.Detach(ctx, late); err != nil {
		t.Fatal(err)
	}
	st, err = e.m.Attach(ctx, AttachRequest{ID: late, NetNS: nsLate})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Endpoints) != 2 {
		t.Errorf("late after restart: %+v, want A and B", st.Endpoints)
	}
	// Disconnecting the network that has the default route moves it to
	// the other one.
	if err := e.m.Disconnect(ctx, late, netA.Name, false); err != nil {
		t.Fatal(err)
	}
	gwB := netB.IPAM.Config[0].Gateway
	if out := run(t, "ip", "-n", filepath.Base(nsLate), "route", "show", "default"); !strings.Contains(out, "via "+gwB.String()+" dev eth1") {
		t.Errorf("default route after disconnecting the gateway network: %q, want via %s dev eth1", out, gwB)
	}
	if st, _ := e.m.Settings(late); len(st.Endpoints) != 1 || st.Endpoints[0].Gateway != gwB {
		t.Errorf("late after the move: %+v", st.Endpoints)
	}
}

func runErr(name string, args ...string) (string, error) {
	out, err := execCommand(name, args...).CombinedOutput()
	return string(out), err
}

func TestRootBadInput(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "good-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{
		Subnet:  netip.MustParsePrefix(fmt.Sprintf("10.%d.240.0/24", e.cfg.AddressPools[0].Base.Addr().As4()[1])),
		IPRange: netip.MustParsePrefix(fmt.Sprintf("10.%d.240.128/25", e.cfg.AddressPools[0].Base.Addr().As4()[1])),
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	sub := n.IPAM.Config[0].Subnet
	routed := e.routed(230)
	for _, tc := range []struct {
		name string
		opts CreateOptions
		is   func(error) bool
		msg  string
	}{
		{"duplicate", CreateOptions{Name: n.Name}, errdefs.IsConflict, "already exists"},
		{"overlap", CreateOptions{Name: "x-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: netip.PrefixFrom(sub.Addr(), 23).Masked()}}}}, errdefs.IsPermissionDenied, "Pool overlaps"},
		{"overlap with the default", CreateOptions{Name: "x-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: e.cfg.DefaultSubnet}}}}, errdefs.IsPermissionDenied, "Pool overlaps"},
		{"host route", CreateOptions{Name: "x-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: routed}}}}, errdefs.IsPermissionDenied, "host's route"},
		{"invalid name", CreateOptions{Name: "a/b"}, errdefs.IsInvalidArgument, "invalid network name"},
		{"empty name", CreateOptions{Name: " "}, errdefs.IsInvalidArgument, "must not be empty"},
		{"predefined", CreateOptions{Name: "host"}, errdefs.IsPermissionDenied, "predefined"},
		{"driver", CreateOptions{Name: "x-" + e.tag, Driver: "overlay"}, errdefs.IsNotFound, "plugin"},
		{"gateway outside", CreateOptions{Name: "x-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: netip.MustParsePrefix("10.99.0.0/24"), Gateway: netip.MustParseAddr("10.98.0.1")}}}}, errdefs.IsInvalidArgument, "not inside subnet"},
		{"range outside", CreateOptions{Name: "x-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: netip.MustParsePrefix("10.99.0.0/24"), IPRange: netip.MustParsePrefix("10.99.1.0/25")}}}}, errdefs.IsInvalidArgument, "not inside subnet"},
		{"ipv6 without subnet", CreateOptions{Name: "x-" + e.tag, EnableIPv6: true}, errdefs.IsInvalidArgument, "IPv6"},
		{"bad mtu", CreateOptions{Name: "x-" + e.tag, Options: map[string]string{OptMTU: "12"}}, errdefs.IsInvalidArgument, "mtu"},
		{"bridge name taken", CreateOptions{Name: "x-" + e.tag, Options: map[string]string{OptBridgeName: n.Bridge}}, errdefs.IsConflict, "bridge name"},
	} {
		_, err := e.m.Create(ctx, tc.opts)
		if !tc.is(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.msg)
		}
	}
	if len(e.m.List()) != 4 {
		t.Errorf("networks after bad creates: %d, want bridge, host, none and one", len(e.m.List()))
	}
	for _, tc := range []struct {
		name string
		c    Container
		is   func(error) bool
		msg  string
	}{
		{"unknown network", Container{Mode: "nope"}, errdefs.IsNotFound, "network nope not found"},
		{"ip outside", Container{Mode: n.Name, Networks: map[string]EndpointConfig{n.Name: {IPv4Address: netip.MustParseAddr("10.1.1.1")}}}, errdefs.IsInvalidArgument, "no configured subnet contains IP address 10.1.1.1"},
		{"ip outside the range", Container{Mode: n.Name, Networks: map[string]EndpointConfig{n.Name: {IPv4Address: sub.Addr().Next().Next()}}}, errdefs.IsInvalidArgument, "outside the network's ip-range"},
		{"ip on the default", Container{Networks: map[string]EndpointConfig{"bridge": {IPv4Address: e.cfg.DefaultSubnet.Addr().Next().Next()}}}, errdefs.IsInvalidArgument, "user defined networks only"},
		{"alias on the default", Container{Networks: map[string]EndpointConfig{"bridge": {Aliases: []string{"x"}}}}, errdefs.IsInvalidArgument, "user defined networks"},
		{"host and another", Container{Mode: "host", Networks: map[string]EndpointConfig{n.Name: {}}}, errdefs.IsInvalidArgument, "host network"},
		{"bad mac", Container{Mode: n.Name, Networks: map[string]EndpointConfig{n.Name: {MacAddress: "zz"}}}, errdefs.IsInvalidArgument, "MAC"},
		{"bad extra host", Container{ExtraHosts: []string{"nohost"}}, errdefs.IsInvalidArgument, "extra host"},
		{"bad host port", Container{PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: "x"}}}}, errdefs.IsInvalidArgument, "host port"},
	} {
		tc.c.ID = ctrID()
		tc.c.Name = "bad"
		err := e.m.Register(ctx, tc.c)
		if !tc.is(err) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.msg)
		}
	}
	for _, name := range []string{"bridge", "host", "none"} {
		if err := e.m.Remove(ctx, name); !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "pre-defined network") {
			t.Errorf("remove %s: %v", name, err)
		}
	}
	if err := e.m.Remove(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("remove unknown: %v", err)
	}
	// An address asked twice: the second start says who holds it.
	ipAsked := netip.MustParseAddr(strings.TrimSuffix(sub.Addr().String(), "0") + "200")
	a, b := ctrID(), ctrID()
	for _, id := range []string{a, b} {
		if err := e.m.Register(ctx, Container{ID: id, Name: "ip" + id[:4], Mode: n.Name, Networks: map[string]EndpointConfig{n.Name: {IPv4Address: ipAsked}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: a, NetNS: e.netns("ipa")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: b, NetNS: e.netns("ipb")}); !errdefs.IsConflict(err) || !strings.Contains(err.Error(), "Address already in use") {
		t.Errorf("second container with %s: %v", ipAsked, err)
	}
	// A namespace outside NetNSDir is refused before any plugin runs.
	c := ctrID()
	if err := e.m.Register(ctx, Container{ID: c, Name: "hostns", Mode: n.Name}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: c, NetNS: "/proc/self/ns/net"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "not under") {
		t.Errorf("attach with the host's namespace: %v", err)
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: c, NetNS: "/run/netns/does-not-exist-" + e.tag}); !errdefs.IsNotFound(err) {
		t.Errorf("attach with a missing namespace: %v", err)
	}
	if _, err := e.m.Attach(ctx, AttachRequest{ID: ctrID(), NetNS: "/run/netns/x"}); !errdefs.IsNotFound(err) {
		t.Errorf("attach of an unregistered container: %v", err)
	}
}

func TestRootRestartReconciles(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	n, err := e.m.Create(ctx, CreateOptions{Name: "keep-" + e.tag})
	if err != nil {
		t.Fatal(err)
	}
	gw := n.IPAM.Config[0].Gateway
	dead, alive := ctrID(), ctrID()
	hostPort := freePort(t)
	for _, c := range []Container{
		{ID: dead, Name: "dead", Mode: n.Name},
		{ID: alive, Name: "alive", Mode: n.Name, PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{HostPort: fmt.Sprint(hostPort)}}}},
	} {
		if err := e.m.Register(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	deadNS, aliveNS := e.netns("dead"), e.netns("alive")
	stDead, err := e.m.Attach(ctx, AttachRequest{ID: dead, NetNS: deadNS})
	if err != nil {
		t.Fatal(err)
	}
	stAlive, err := e.m.Attach(ctx, AttachRequest{ID: alive, NetNS: aliveNS})
	if err != nil {
		t.Fatal(err)
	}
	serve(t, aliveNS, 80)

	// A network whose creation a crash interrupted: a record marked as
	// being removed, and its bridge.
	half := &Network{ID: newID(), Name: "half-" + e.tag, Driver: DriverBridge, IPAM: IPAM{Config: []IPAMConfig{{
		Subnet: e.routedPrefix(200), Gateway: e.routedPrefix(200).Addr().Next(),
	}}}, MTU: 1500}
	half.Bridge = "br-" + shortID(half.ID)
	if err := e.m.saveNetwork(half, true); err != nil {
		t.Fatal(err)
	}
	if err := e.m.ensureBridge(half); err != nil {
		t.Fatal(err)
	}
	// An orphan bridge of this root: its record is gone.
	orphan := &Network{ID: newID(), Bridge: "bt" + e.tag + "o", MTU: 1500}
	if err := e.m.ensureBridge(orphan); err != nil {
		t.Fatal(err)
	}

	e.crash()
	// While berthd is down, dead's container goes, with its namespace,
	// and an ADD that berthd died in left a lease without a record.
	run(t, "ip", "netns", "del", filepath.Base(deadNS))
	stale := netip.MustParseAddr(strings.TrimSuffix(n.IPAM.Config[0].Subnet.Addr().String(), "0") + "222")
	leaseDir := filepath.Join(e.cfg.ipamDir(), cniName(&n))
	if err := os.WriteFile(filepath.Join(leaseDir, stale.String()), []byte(ctrID()+"\r\neth0"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Someone flushed the bridge's address too.
	run(t, "ip", "addr", "flush", "dev", n.Bridge)

	e.open()
	if fileExists(filepath.Join(leaseDir, stale.String())) {
		t.Error("stale lease still there after restart")
	}
	if fileExists(filepath.Join(leaseDir, stDead.Endpoints[0].IPv4.Addr().String())) {
		t.Error("lease of the container whose namespace went is still there")
	}
	if st, _ := e.m.Settings(dead); st.Endpoints[0].Attached() {
		t.Errorf("dead container still attached: %+v", st)
	}
	if bridgeExists(half.Bridge) || bridgeExists(orphan.Bridge) {
		t.Errorf("half-made network's bridge %s or orphan bridge %s still there", half.Bridge, orphan.Bridge)
	}
	if _, err := e.m.Get(half.Name); !errdefs.IsNotFound(err) {
		t.Errorf("half-made network: %v", err)
	}
	// alive is still attached: its names answer, its port is held and
	// reaches it.
	if m, err := lookup(t, aliveNS, gw, "alive", dns.TypeA, "udp"); err != nil || !slices.Equal(answers(m), []string{stAlive.Endpoints[0].IPv4.Addr().String()}) {
		t.Errorf("alive's name after restart: %v, %v", m, err)
	}
	if got, err := dial(t, "", fmt.Sprintf("127.0.0.1:%d", hostPort)); err != nil || got != filepath.Base(aliveNS) {
		t.Errorf("published port after restart: %q, %v", got, err)
	}
	if l, err := net.Listen("tcp", fmt.Sprintf(":%d", hostPort)); err == nil {
		l.Close()
		t.Errorf("published port %d not held after restart", hostPort)
	}

	// kill -9 + restart + removal leaves nothing.
	e.crash()
	e.open()
	for _, id := range []string{dead, alive} {
		if err := e.m.Unregister(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.m.Remove(ctx, n.ID); err != nil {
		t.Fatal(err)
	}
	if left := e.leftovers(n, *half); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "\n"))
	}
}

func TestRootAuxAddresses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	sub := e.routedPrefix(210)
	aux := sub.Addr().Next().Next() // .2, the first address IPAM would give
	n, err := e.m.Create(ctx, CreateOptions{Name: "aux-" + e.tag, IPAM: IPAM{Config: []IPAMConfig{{Subnet: sub, AuxAddress: map[string]netip.Addr{"router": aux}}}}})
	if err != nil {
		t.Fatal(err)
	}
	lease := filepath.Join(e.cfg.ipamDir(), cniName(&n), aux.String())
	if b, err := os.ReadFile(lease); err != nil || string(b) != auxPrefix+"router" {
		t.Fatalf("aux reservation %s: %q, %v", lease, b, err)
	}
	id := ctrID()
	if err := e.m.Register(ctx, Container{ID: id, Name: "c", Mode: n.Name}); err != nil {
		t.Fatal(err)
	}
	st, err := e.m.Attach(ctx, AttachRequest{ID: id, NetNS: e.netns("c")})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Endpoints[0].IPv4.Addr(); got == aux || !sub.Contains(got) {
		t.Errorf("container got %s, the auxiliary address is %s", got, aux)
	}
	// The start-up sweep of stale leases keeps the reservation.
	e.crash()
	e.open()
	if !fileExists(lease) {
		t.Error("the aux reservation did not survive a restart")
	}
	if got, _ := e.m.Get(n.Name); got.IPAM.Config[0].AuxAddress["router"] != aux {
		t.Errorf("inspect after restart: %+v", got.IPAM)
	}
}

func TestRootIPv6AndInternal(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	v6 := netip.MustParsePrefix(fmt.Sprintf("fd%02x:%s::/64", randInt(250), e.tag[:4]))
	dual, err := e.m.Create(ctx, CreateOptions{Name: "dual-" + e.tag, EnableIPv6: true, IPAM: IPAM{Config: []IPAMConfig{{Subnet: v6}}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(dual.IPAM.Config) != 2 || !dual.IPAM.Config[0].Subnet.Addr().Is4() || dual.IPAM.Config[1].Subnet != v6 || dual.IPAM.Config[1].Gateway != v6.Addr().Next() {
		t.Fatalf("dual-stack IPAM %+v, want a picked IPv4 subnet and %s", dual.IPAM, v6)
	}
	internal, err := e.m.Create(ctx, CreateOptions{Name: "int-" + e.tag, Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	a, b := ctrID(), ctrID()
	if err := e.m.Register(ctx, Container{ID: a, Name: "a6", Mode: dual.Name, Networks: map[string]EndpointConfig{internal.Name: {}}}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Register(ctx, Container{ID: b, Name: "b6", Mode: dual.Name, PortBindings: map[Port][]PortBinding{{80, "tcp"}: {{}}}}); err != nil {
		t.Fatal(err)
	}
	nsA, nsB := e.netns("a6"), e.netns("b6")
	stA, err := e.m.Attach(ctx, AttachRequest{ID: a, NetNS: nsA})
	if err != nil {
		t.Fatal(err)
	}
	stB, err := e.m.Attach(ctx, AttachRequest{ID: b, NetNS: nsB})
	if err != nil {
		t.Fatal(err)
	}
	epA, _ := stA.Endpoint(dual.Name)
	epB, _ := stB.Endpoint(dual.Name)
	if !v6.Contains(epB.IPv6.Addr()) || epB.IPv6Gateway != v6.Addr().Next() || !epB.IPv4.IsValid() {
		t.Fatalf("dual-stack endpoint %+v", epB)
	}
	// AAAA and A of a dual-stack container, and reachability over IPv6.
	gw4 := dual.IPAM.Config[0].Gateway
	if m, err := lookup(t, nsA, gw4, "b6", dns.TypeAAAA, "udp"); err != nil || !slices.Equal(answers(m), []string{epB.IPv6.Addr().String()}) {
		t.Errorf("AAAA b6: %v, %v", m, err)
	}
	serve(t, nsB, 80)
	if got, err := dial(t, nsA, netip.AddrPortFrom(epB.IPv6.Addr(), 80).String()); err != nil || got != filepath.Base(nsB) {
		t.Errorf("a6 -> b6 over IPv6: %q, %v", got, err)
	}
	// The internal network: no default route through it, names still
	// resolve on it, nothing crosses its bridge.
	epInt, _ := stA.Endpoint(internal.Name)
	if epInt.Gateway.IsValid() || epInt.IfName != "eth1" {
		t.Errorf("internal endpoint %+v, want eth1 without a gateway", epInt)
	}
	routes := run(t, "ip", "-n", filepath.Base(nsA), "route", "show", "default")
	if !strings.Contains(routes, "dev eth0") || strings.Contains(routes, "eth1") {
		t.Errorf("default routes of a6: %q, want eth0 only", routes)
	}
	// The first network that has the name answers, as Docker's resolver.
	if m, err := lookup(t, nsA, internal.IPAM.Config[0].Gateway, "a6", dns.TypeA, "udp"); err != nil || !slices.Equal(answers(m), []string{epA.IPv4.Addr().String()}) {
		t.Errorf("a6 through the internal network's resolver: %v, %v", m, err)
	}
	if m, err := lookup(t, nsA, internal.IPAM.Config[0].Gateway, "a6."+internal.Name, dns.TypeA, "udp"); err != nil || !slices.Equal(answers(m), []string{epInt.IPv4.Addr().String()}) {
		t.Errorf("a6.%s: %v, %v", internal.Name, m, err)
	}
	// A container whose first network is internal gets its default route
	// (and published ports) through the second.
	c := ctrID()
	if err := e.m.Register(ctx, Container{ID: c, Name: "c6", Mode: internal.Name, Networks: map[string]EndpointConfig{dual.Name: {}}}); err != nil {
		t.Fatal(err)
	}
	nsC := e.netns("c6")
	stC, err := e.m.Attach(ctx, AttachRequest{ID: c, NetNS: nsC})
	if err != nil {
		t.Fatal(err)
	}
	if eps := stC.Endpoints; len(eps) != 2 || eps[0].NetworkName != internal.Name || eps[0].IfName != "eth0" || eps[0].Gateway.IsValid() || eps[1].Gateway != gw4 {
		t.Errorf("endpoints of c6: %+v, want eth0 on the internal network, the gateway on eth1", eps)
	}
	if out := run(t, "ip", "-n", filepath.Base(nsC), "route", "show", "default"); !strings.Contains(out, "via "+gw4.String()+" dev eth1") {
		t.Errorf("default route of c6: %q", out)
	}
	if err := e.m.Unregister(ctx, c); err != nil {
		t.Fatal(err)
	}
	save := run(t, "iptables-save")
	for _, want := range []string{"-i " + internal.Bridge + " ! -o " + internal.Bridge + " -m comment --comment \"berth " + internal.ID + "\" -j DROP"} {
		if !strings.Contains(save, want) {
			t.Errorf("iptables lacks %q", want)
		}
	}
	for _, id := range []string{a, b} {
		if err := e.m.Unregister(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []Network{dual, internal} {
		if err := e.m.Remove(ctx, n.ID); err != nil {
			t.Fatal(err)
		}
	}
	if left := e.leftovers(dual, internal); len(left) > 0 {
		t.Errorf("left behind: %s", strings.Join(left, "\n"))
	}
}
