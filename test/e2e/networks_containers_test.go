package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The networking chapter of the docker tutorial with the stock docker CLI:
// user networks with DNS by name, aliases, ping, live connect and
// disconnect, isolation, the host/none/container: modes, published ports,
// static addresses, and removal without leftovers.

// dbCommand serves "hello from NAME" over HTTP on port 80 (busybox httpd).
func dbCommand(name string) []string {
	return []string{"sh", "-c", "mkdir -p /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www"}
}

// eventually retries f for up to 10 s (a server in a container that just
// started may not listen yet).
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getCommand fetches http://host/ with nc (the busybox-static of these
// machines crashes in wget) and prints the body.
func getCommand(host string) []string {
	return []string{"sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + host + ` 80 | sed '1,/^\r*$/d'`}
}

// fetch gets http://host/ from a throw-away container on network.
func (e *dockerEnv) fetch(network, host string) (string, string, int) {
	e.t.Helper()
	out, errOut, code := e.cliErr(append([]string{"run", "--rm", "--network", network, e.Image}, getCommand(host)...)...)
	if code == 0 && strings.TrimSpace(out) == "" {
		code = 1 // nc exits 0 when the connection fails silently
	}
	return out, errOut, code
}

func TestDockerCLINetworkTutorial(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("network", "create", "app-net")
	e.cli(append([]string{"run", "-d", "--name", "db", "--network", "app-net", "--network-alias", "database", e.Image}, dbCommand("db")...)...)

	// web fetches http://db/ by name, and by the alias.
	for _, host := range []string{"db", "database"} {
		eventually(t, "web fetches http://"+host+"/", func() error {
			out, errOut, code := e.fetch("app-net", host)
			if code != 0 || strings.TrimSpace(out) != "hello from db" {
				return fmt.Errorf("exit %d: %q %s", code, out, errOut)
			}
			return nil
		})
	}
	// ping by name (busybox ping: the default capabilities include
	// NET_RAW, as Docker's).
	out, errOut, code := e.cliErr("run", "--rm", "--network", "app-net", e.Image, "ping", "-c", "1", "-W", "2", "db")
	if code != 0 || !strings.Contains(out, "1 packets received") {
		t.Errorf("ping db: exit %d:\n%s%s", code, out, errOut)
	}
	// A container's own files: resolv.conf names the network's resolver,
	// /etc/hosts its own address.
	dbIP := strings.TrimSpace(e.cli("inspect", "-f", "{{(index .NetworkSettings.Networks \"app-net\").IPAddress}}", "db"))
	gw := strings.TrimSpace(e.cli("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", "app-net"))
	if net.ParseIP(dbIP) == nil || net.ParseIP(gw) == nil {
		t.Fatalf("db's address %q, app-net's gateway %q", dbIP, gw)
	}
	files := e.cli("run", "--rm", "--network", "app-net", "--hostname", "probe", e.Image, "sh", "-c", "cat /etc/resolv.conf; echo ---; cat /etc/hosts; echo ---; ip -o -4 addr show eth0")
	parts := strings.Split(files, "---\n")
	if len(parts) != 3 || !strings.Contains(parts[0], "nameserver "+gw+"\n") || !strings.Contains(parts[0], "ndots:0") {
		t.Errorf("resolv.conf on app-net:\n%s", files)
	} else if m := regexp.MustCompile(`inet ([0-9.]+)/`).FindStringSubmatch(parts[2]); m == nil || !regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(m[1])+`\s+probe$`).MatchString(parts[1]) {
		t.Errorf("/etc/hosts lacks the container's address under its hostname:\n%s", files)
	}
	// inspect: the endpoint with its names, and the network's containers.
	var eps map[string]struct {
		IPAddress, Gateway, MacAddress string
		Aliases, DNSNames              []string
	}
	if err := json.Unmarshal([]byte(e.cli("inspect", "-f", "{{json .NetworkSettings.Networks}}", "db")), &eps); err != nil {
		t.Fatal(err)
	}
	ep := eps["app-net"]
	if ep.Gateway != gw || ep.MacAddress == "" || !contains(ep.Aliases, "database") || !contains(ep.DNSNames, "db") || !contains(ep.DNSNames, "database") {
		t.Errorf("db's endpoint %+v", ep)
	}
	if got := e.cli("network", "inspect", "-f", "{{range .Containers}}{{.Name}} {{end}}", "app-net"); strings.TrimSpace(got) != "db" {
		t.Errorf("app-net's containers: %q", got)
	}

	// Isolation: a container on another network neither resolves nor
	// reaches db.
	e.cli("network", "create", "other-net")
	if _, _, code := e.fetch("other-net", "db"); code == 0 {
		t.Error("a container on other-net fetched http://db/")
	}
	if _, _, code := e.fetch("other-net", dbIP); code == 0 {
		t.Error("a container on other-net reached db's address")
	}
	// A container on other-net, connected to app-net live: it reaches db
	// by name, over a second interface; disconnected, it no longer does.
	probe := `while :; do if printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 1 db 80 | grep -q 'hello from db'; then s=UP; else s=DOWN; fi; echo "$s $(ip -o -4 addr show | grep -c eth)"; sleep 0.2; done`
	e.cli("run", "-d", "--name", "both", "--network", "other-net", e.Image, "sh", "-c", probe)
	state := func(want string) {
		t.Helper()
		eventually(t, "both reports "+want, func() error {
			got := strings.TrimSpace(e.cli("logs", "--tail", "1", "both"))
			if got != want {
				return fmt.Errorf("last line %q", got)
			}
			return nil
		})
	}
	state("DOWN 1")
	e.cli("network", "connect", "app-net", "both")
	state("UP 2")
	// Connecting twice is refused in docker's words.
	if _, errOut, code := e.cliErr("network", "connect", "app-net", "both"); code == 0 || !strings.Contains(errOut, "already exists in network app-net") {
		t.Errorf("connect twice: exit %d %s", code, errOut)
	}
	e.cli("network", "disconnect", "app-net", "both")
	state("DOWN 1")
	// A network in use is not removed.
	if _, errOut, code := e.cliErr("network", "rm", "app-net"); code == 0 || !strings.Contains(errOut, "has active endpoints") {
		t.Errorf("rm of a network in use: exit %d %s", code, errOut)
	}
	// The default bridge has no names; --link puts one in /etc/hosts.
	if _, _, code := e.fetch("bridge", "db"); code == 0 {
		t.Error("a container on the default bridge resolved db")
	}
	e.cli(append([]string{"run", "-d", "--name", "olddb", e.Image}, dbCommand("olddb")...)...)
	oldIP := strings.TrimSpace(e.cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "olddb"))
	out = e.cli("run", "--rm", "--link", "olddb:legacy", e.Image, "sh", "-c", "grep legacy /etc/hosts; "+getCommand("legacy")[2])
	if !strings.Contains(out, oldIP+"\tlegacy olddb") || !strings.Contains(out, "hello from olddb") {
		t.Errorf("--link olddb:legacy (olddb at %s):\n%s", oldIP, out)
	}
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// TestDockerCLINetworkModesAndPorts: -p with a host address, -P with
// docker port, --subnet with --ip, created containers connected before
// they start (compose's way), host, none and container: modes.
func TestDockerCLINetworkModesAndPorts(t *testing.T) {
	e := newDockerEnv(t)
	port := freeTCPPort(t)
	e.cli(append([]string{"run", "-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), "--expose", "81", "-P", e.Image}, dbCommand("web")...)...)
	eventually(t, "GET 127.0.0.1:port", func() error {
		body, err := httpGetOnce(fmt.Sprintf("http://127.0.0.1:%d/", port))
		if err == nil && strings.TrimSpace(body) != "hello from web" {
			err = fmt.Errorf("body %q", body)
		}
		return err
	})
	out := e.cli("port", "web")
	if !strings.Contains(out, fmt.Sprintf("80/tcp -> 127.0.0.1:%d", port)) || !regexp.MustCompile(`81/tcp -> 0\.0\.0\.0:\d+`).MatchString(out) {
		t.Errorf("docker port web:\n%s", out)
	}
	// Only 127.0.0.1 was published on port: another host address does
	// not answer.
	if addrs, _ := net.InterfaceAddrs(); len(addrs) > 0 {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil && !ipn.IP.IsLoopback() {
				if _, err := httpGetOnce(fmt.Sprintf("http://%s:%d/", ipn.IP, port)); err == nil {
					t.Errorf("port %d answered on %s, published on 127.0.0.1 only", port, ipn.IP)
				}
				break
			}
		}
	}

	// --subnet with --ip, connected while created.
	sub := e.d.Networks.subnet(5)
	ip := strings.TrimSuffix(sub, "0/24") + "50"
	e.cli("network", "create", "--subnet", sub, "static")
	e.cli("create", "--name", "fixed", "--network", "static", "--ip", ip, e.Image, "sleep", "600")
	e.cli("network", "create", "late-net")
	e.cli("network", "connect", "--alias", "fx", "late-net", "fixed")
	e.cli("start", "fixed")
	got := e.cli("inspect", "-f", `{{(index .NetworkSettings.Networks "static").IPAddress}} {{len .NetworkSettings.Networks}}`, "fixed")
	if strings.TrimSpace(got) != ip+" 2" {
		t.Errorf("fixed: %q, want %s on static and two networks", got, ip)
	}
	if out, errOut, code := e.cliErr("run", "--rm", "--network", "late-net", e.Image, "ping", "-c", "1", "-W", "2", "fx"); code != 0 {
		t.Errorf("the alias given at connect before start: exit %d %s%s", code, out, errOut)
	}
	// --network twice (API 1.44+): one interface on each.
	if got := strings.TrimSpace(e.cli("run", "--rm", "--network", "static", "--network", "late-net", e.Image, "sh", "-c", "ip -o -4 addr show | grep -c eth")); got != "2" {
		t.Errorf("--network twice: %s interfaces, want 2", got)
	}
	if _, errOut, code := e.cliErr("run", "--rm", "--network", "static", "--ip", "10.1.2.3", e.Image, "true"); code == 0 || !strings.Contains(errOut, "no configured subnet contains IP address 10.1.2.3") {
		t.Errorf("--ip outside the subnet: exit %d %s", code, errOut)
	}

	// host: the host's interfaces; none: lo only; container: the other's.
	hostIfaces := e.cli("run", "--rm", "--network", "host", e.Image, "ip", "-o", "link", "show")
	if want, _ := exec.Command("ip", "-o", "link", "show").Output(); strings.Count(hostIfaces, "\n") != strings.Count(string(want), "\n") {
		t.Errorf("--network host sees %d interfaces, the host has %d", strings.Count(hostIfaces, "\n"), strings.Count(string(want), "\n"))
	}
	if got := e.cli("run", "--rm", "--network", "none", e.Image, "ip", "-o", "link", "show"); strings.Count(got, "\n") != 1 || !strings.Contains(got, "lo:") {
		t.Errorf("--network none:\n%s", got)
	}
	webIP := strings.TrimSpace(e.cli("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "web"))
	if got := e.cli("run", "--rm", "--network", "container:web", e.Image, "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(got, webIP+"/") {
		t.Errorf("--network container:web sees %q, want web's %s", got, webIP)
	}
	if got := e.cli(append([]string{"run", "--rm", "--network", "container:web", e.Image}, getCommand("127.0.0.1")...)...); strings.TrimSpace(got) != "hello from web" {
		t.Errorf("container:web fetches its localhost: %q", got)
	}
	if got := e.cli("network", "inspect", "-f", "{{len .Containers}}", "host"); strings.TrimSpace(got) != "0" {
		t.Errorf("host network's containers after the --rm run: %q", got)
	}

	// An exited container shows no ports, as dockerd releases them at the
	// exit: one that ended by itself, and web right after docker stop
	// returned (the exit's handling, the network's detach, may still run).
	e.cli("run", "-d", "--name", "brief", "-p", "127.0.0.1::80", e.Image, "sleep", "1")
	await(t, "brief to exit", func() bool {
		return strings.TrimSpace(e.cli("inspect", "-f", "{{.State.Status}}", "brief")) == "exited"
	})
	e.cli("stop", "-t", "0", "web")
	for _, name := range []string{"brief", "web"} {
		if got := e.cli("ps", "-a", "--filter", "name="+name, "--format", "{{.Status}}|{{.Ports}}"); !strings.HasPrefix(got, "Exited") || !strings.HasSuffix(got, "|\n") {
			t.Errorf("ps -a of exited %s shows ports: %q", name, got)
		}
		if got := strings.TrimSpace(e.cli("inspect", "-f", "{{json .NetworkSettings.Ports}} {{.NetworkSettings.IPAddress}}", name)); got != "{}" {
			t.Errorf("inspect of exited %s: ports and address %q, want {} and none", name, got)
		}
		if got := e.cli("port", name); got != "" {
			t.Errorf("docker port of exited %s: %q", name, got)
		}
	}
}

// TestDockerCLINetworkRemovalLeavesNothing: after the containers and then
// the network go, no veth, bridge, lease, iptables rule or DNS listener
// is left; also after berthd is killed with SIGKILL in between.
func TestDockerCLINetworkRemovalLeavesNothing(t *testing.T) {
	e := newDockerEnv(t)
	check := func(name, id, bridge, gw string) {
		t.Helper()
		if _, err := net.InterfaceByName(bridge); err == nil {
			t.Errorf("%s: bridge %s left", name, bridge)
		}
		save, _ := exec.Command("iptables-save").Output()
		for _, l := range strings.Split(string(save), "\n") {
			if strings.Contains(l, bridge) || strings.Contains(l, id) || strings.Contains(l, strings.TrimSuffix(gw, "1")) {
				t.Errorf("%s: iptables rule left: %s", name, l)
			}
		}
		if leases, _ := filepath.Glob(filepath.Join(e.d.Root, "network", "ipam", "berth-"+id[:12], "*")); len(leases) > 0 {
			t.Errorf("%s: leases left: %v", name, leases)
		}
		if c, err := net.ListenPacket("udp", gw+":53"); err == nil {
			c.Close()
		} else if !strings.Contains(err.Error(), "cannot assign requested address") {
			t.Errorf("%s: something holds %s:53: %v", name, gw, err)
		}
		if links, _ := net.Interfaces(); len(links) > 0 {
			for _, l := range links {
				if strings.HasPrefix(l.Name, "veth") {
					if master, _ := os.Readlink("/sys/class/net/" + l.Name + "/master"); filepath.Base(master) == bridge {
						t.Errorf("%s: veth %s left on %s", name, l.Name, bridge)
					}
				}
			}
		}
	}
	for _, kill := range []bool{false, true} {
		name := "gone"
		if kill {
			name = "gone-after-kill"
		}
		id := strings.TrimSpace(e.cli("network", "create", name))
		gw := strings.TrimSpace(e.cli("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", name))
		bridge := "br-" + id[:12]
		e.cli("run", "-d", "--name", name+"-a", "--network", name, "-p", "80", e.Image, "sleep", "600")
		e.cli("run", "-d", "--name", name+"-b", "--network", name, e.Image, "sleep", "600")
		if kill {
			e.d.Kill9()
			e.d.Start()
		}
		e.cli("rm", "-f", name+"-a", name+"-b")
		e.cli("network", "rm", name)
		check(name, id, bridge, gw)
	}
}

func freeTCPPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func httpGetOnce(url string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}
