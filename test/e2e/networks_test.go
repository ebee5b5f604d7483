package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/testutil"
)

// dockerCLI runs the stock docker CLI against d.
type dockerCLI struct {
	t   *testing.T
	bin string
	env []string
}

func newDockerCLI(t *testing.T, d *daemon) *dockerCLI {
	docker := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	home := t.TempDir()
	return &dockerCLI{t: t, bin: docker, env: []string{"DOCKER_HOST=unix://" + d.DockerSock, "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}}
}

// newBerthCLI is the berth CLI against d (docker's command tree, pointed
// at berthd by BERTH_HOST; DOCKER_HOST must not matter).
func newBerthCLI(t *testing.T, d *daemon) *dockerCLI {
	_, berth := binaries(t)
	home := t.TempDir()
	return &dockerCLI{t: t, bin: berth, env: []string{"BERTH_HOST=unix://" + d.DockerSock, "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker"),
		"DOCKER_HOST=unix:///nonexistent/docker.sock", "DOCKER_CONTEXT=nosuch"}}
}

// ok runs docker and returns its stdout; a failure fails the test.
func (c *dockerCLI) ok(args ...string) string {
	c.t.Helper()
	return run(c.t, c.env, c.bin, args...)
}

// fails runs docker, which must fail, and returns its stderr.
func (c *dockerCLI) fails(args ...string) string {
	c.t.Helper()
	out, errOut, err := runErr(c.env, c.bin, args...)
	if err == nil {
		c.t.Fatalf("docker %s succeeded:\n%s", strings.Join(args, " "), out)
	}
	return errOut
}

// subnet is the n-th /24 of the daemon's pool.
func (n engineNetworks) subnet(i int) string {
	ip := n.Pool.IP.To4()
	return fmt.Sprintf("%d.%d.%d.0/24", ip[0], ip[1], int(ip[2])+i)
}

// TestDockerCLINetworkObjects drives `docker network` with the stock CLI:
// the predefined networks, create with every IPAM and bridge option,
// filters, inspect, rm, prune, and docker's errors for bad input. Nothing
// is left on the host afterwards.
func TestDockerCLINetworkObjects(t *testing.T) {
	reg := newRegistry(t)
	d := startDaemon(t, reg)
	networkObjects(t, d, newDockerCLI(t, d))
}

// TestBerthCLINetworkObjects is the same with `berth network`.
func TestBerthCLINetworkObjects(t *testing.T) {
	reg := newRegistry(t)
	d := startDaemon(t, reg)
	networkObjects(t, d, newBerthCLI(t, d))
}

func networkObjects(t *testing.T, d *daemon, docker *dockerCLI) {

	out := docker.ok("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}")
	for _, want := range []string{"bridge bridge local", "host host local", "none null local"} {
		if !strings.Contains(out, want) {
			t.Errorf("network ls lacks %q:\n%s", want, out)
		}
	}
	out = docker.ok("network", "inspect", "bridge", "--format", `{{index .Options "com.docker.network.bridge.name"}} {{(index .IPAM.Config 0).Subnet}}`)
	if f := strings.Fields(out); len(f) != 2 || f[0] != d.Networks.Bridge || !d.Networks.Pool.Contains(net.ParseIP(strings.Split(f[1], "/")[0])) {
		t.Errorf("default network: %q, want bridge %s with a subnet of %s", out, d.Networks.Bridge, d.Networks.Pool)
	}

	sub := d.Networks.subnet(4)
	gw := strings.TrimSuffix(sub, "0/24") + "254"
	ipRange := strings.TrimSuffix(sub, "0/24") + "128/25"
	id := strings.TrimSpace(docker.ok("network", "create", "--subnet", sub, "--gateway", gw, "--ip-range", ipRange,
		"-o", "com.docker.network.driver.mtu=1400", "--label", "tier=back", "custom"))
	named := d.Networks.Bridge + "n"
	auto := strings.TrimSpace(docker.ok("network", "create", "--internal", "-o", "com.docker.network.bridge.name="+named, "auto"))
	if len(id) != 64 || len(auto) != 64 {
		t.Fatalf("network create printed %q and %q, want IDs", id, auto)
	}
	var ins []struct {
		Name     string
		ID       string `json:"Id"`
		Internal bool
		IPAM     struct {
			Config []struct{ Subnet, Gateway, IPRange string }
		}
		Options, Labels map[string]string
		Containers      map[string]any
	}
	if err := json.Unmarshal([]byte(docker.ok("network", "inspect", "custom")), &ins); err != nil || len(ins) != 1 {
		t.Fatalf("inspect custom: %v %+v", err, ins)
	}
	c := ins[0].IPAM.Config
	if len(c) != 1 || c[0].Subnet != sub || c[0].Gateway != gw || c[0].IPRange != ipRange || ins[0].Options["com.docker.network.driver.mtu"] != "1400" || ins[0].Labels["tier"] != "back" {
		t.Errorf("inspect custom: %+v", ins[0])
	}
	out = docker.ok("network", "inspect", "auto", "--format", "{{.Internal}} {{(index .IPAM.Config 0).Subnet}} {{len .Containers}}")
	if f := strings.Fields(out); len(f) != 3 || f[0] != "true" || !d.Networks.Pool.Contains(net.ParseIP(strings.Split(f[1], "/")[0])) || f[2] != "0" {
		t.Errorf("inspect auto: %q, want internal with a subnet of the pool and no containers", out)
	}
	// The bridge and its MTU are on the host at once (the DNS responder
	// listens on the gateway).
	if link, err := net.InterfaceByName("br-" + id[:12]); err != nil || link.MTU != 1400 {
		t.Errorf("bridge br-%s: %v %+v", id[:12], err, link)
	}
	if _, err := net.InterfaceByName(named); err != nil {
		t.Errorf("bridge %s named by com.docker.network.bridge.name: %v", named, err)
	}

	for _, tc := range []struct {
		filter string
		want   string
	}{
		{"name=cust", "custom"},
		{"label=tier=back", "custom"},
		{"type=custom", "auto custom"},
		{"driver=null", "none"},
		{"dangling=true", "auto custom"},
		{"id=" + auto[:10], "auto"},
	} {
		got := strings.Join(strings.Fields(docker.ok("network", "ls", "--filter", tc.filter, "--format", "{{.Name}}")), " ")
		if got != tc.want {
			t.Errorf("network ls --filter %s: %q, want %q", tc.filter, got, tc.want)
		}
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "custom"}, "network with name custom already exists"},
		{[]string{"network", "create", "--subnet", sub, "overlap"}, "Pool overlaps with other one on this address space"},
		{[]string{"network", "create", "bad/name"}, `invalid network name "bad/name"`},
		{[]string{"network", "create", "--subnet", "10.9.0.0/24", "--gateway", "10.8.0.1", "gw"}, "no matching subnet for gateway 10.8.0.1"}, // the CLI checks this one itself
		{[]string{"network", "create", "host"}, "operation is not permitted on predefined host network"},
		{[]string{"network", "create", "-d", "overlay", "ov"}, `plugin "overlay" not found`},
		{[]string{"network", "rm", "bridge"}, "bridge is a pre-defined network and cannot be removed"},
		{[]string{"network", "rm", "nope"}, "network nope not found"},
		{[]string{"network", "inspect", "nope"}, "network nope not found"},
		{[]string{"network", "connect", "custom", "ghost"}, "No such container: ghost"},
	} {
		if got := docker.fails(tc.args...); !strings.Contains(got, tc.want) {
			t.Errorf("docker %s: %q, want %q", strings.Join(tc.args, " "), got, tc.want)
		}
	}

	out = docker.ok("network", "prune", "-f", "--filter", "label=tier=back")
	if !strings.Contains(out, "custom") || strings.Contains(out, "auto") {
		t.Errorf("network prune --filter label=tier=back:\n%s", out)
	}
	if got := strings.TrimSpace(docker.ok("network", "rm", "auto")); got != "auto" {
		t.Errorf("network rm printed %q", got)
	}
	if got := strings.Fields(docker.ok("network", "ls", "--format", "{{.Name}}")); len(got) != 3 {
		t.Errorf("networks left: %v", got)
	}
	for _, b := range []string{"br-" + id[:12], named} {
		if _, err := net.InterfaceByName(b); err == nil {
			t.Errorf("bridge %s still there after rm", b)
		}
	}
	if out, _ := exec.Command("iptables-save").Output(); strings.Contains(string(out), "br-"+id[:12]) || strings.Contains(string(out), named+" ") {
		t.Errorf("iptables rules of removed networks left")
	}
}
