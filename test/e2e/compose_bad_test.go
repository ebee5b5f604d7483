package e2e

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// TestComposeInvalidFile: a compose file that breaks the schema gets the
// client's own error, and nothing reaches berthd's objects.
func TestComposeInvalidFile(t *testing.T) {
	forEachComposeClient(t, func(t *testing.T, c composeClient) {
		e := newComposeEnv(t, c, "bad")
		writeFile(t, filepath.Join(e.dir, "compose.yaml"), "services:\n  web:\n    image: "+e.Image+"\n    ports: 80\n")
		want := "services.web.ports must be a array"
		if c.v1 {
			want = "services.web.ports contains an invalid type, it should be an array"
		}
		for _, verb := range []string{"config", "up"} {
			args := []string{verb}
			if verb == "up" {
				args = append(args, "-d")
			}
			_, errOut, code := e.composeErr(args...)
			if code == 0 || !strings.Contains(errOut, want) || strings.Contains(errOut, "daemon") {
				t.Errorf("%s of an invalid file: exit %d, stderr %q; want compose's %q", verb, code, errOut, want)
			}
		}
		if cs := e.containers(""); len(cs) != 0 {
			t.Errorf("an invalid file made %d containers", len(cs))
		}
		nets, _ := e.api.NetworkList(ctxT(t), client.NetworkListOptions{Filters: client.Filters{}.Add("label", "com.docker.compose.project")})
		if len(nets.Items) != 0 {
			t.Errorf("an invalid file made networks %v", nets.Items)
		}
	})
}

// TestComposePortTaken: a published port that another project's container
// holds fails up with docker's message and leaves the project's other
// services as they were; so does a port a host process listens on.
func TestComposePortTaken(t *testing.T) {
	forEachComposeClient(t, func(t *testing.T, c composeClient) {
		e := newComposeEnv(t, c, "ports")
		held := freePort(t)
		e.cenv = append(e.cenv, fmt.Sprintf("HELD=%d", held))
		writeFile(t, filepath.Join(e.dir, "compose.yaml"), `services:
  app:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
  web:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 & wait"]
    ports: ["${HELD}:80"]
`)
		// Another container holds the port.
		e.cli("run", "-d", "--name", "holder", "-p", fmt.Sprintf("%d:80", held), e.Image, "sleep", "600")
		_, errOut, code := e.composeErr("up", "-d")
		if want := fmt.Sprintf("Bind for 0.0.0.0:%d failed: port is already allocated", held); code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("up with a taken port: exit %d, stderr:\n%s\nwant %q", code, errOut, want)
		}
		if st := e.one("app").State; st.Status != "running" {
			t.Errorf("app is %s after web failed, want running", st.Status)
		}
		web := e.one("web")
		if st := web.State; st.Status != "created" || st.ExitCode != 128 || !strings.Contains(st.Error, "port is already allocated") || st.Pid != 0 {
			t.Errorf("web with its port taken: %+v, want created, exit code 128 and the error, as dockerd", st)
		}
		if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", held)); err == nil && body != "" {
			t.Errorf("the held port answered %q", body)
		}
		e.compose("down")
		e.cli("rm", "-f", "holder")

		// A host process listens on the port.
		l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", held))
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		_, errOut, code = e.composeErr("up", "-d")
		if want := fmt.Sprintf("Error starting userland proxy: listen tcp4 0.0.0.0:%d: bind: address already in use", held); code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("up with a port a host process holds: exit %d, stderr:\n%s", code, errOut)
		}
		if st := e.one("app").State; st.Status != "running" {
			t.Errorf("app is %s after web failed, want running", st.Status)
		}
		l.Close()
		// Once free, up starts web.
		e.compose("up", "-d")
		if st := e.one("web").State; st.Status != "running" {
			t.Errorf("web is %s once its port is free", st.Status)
		}
		e.compose("down", "-v")
	})
}

// TestComposeDownAfterKill9: berthd is killed -9 while up -d creates a
// project; after its restart, down -v removes every container, network
// and volume of the project and nothing of them is left on the host.
func TestComposeDownAfterKill9(t *testing.T) {
	forEachComposeClient(t, func(t *testing.T, c composeClient) {
		e := newComposeEnv(t, c, "crash")
		writeFile(t, filepath.Join(e.dir, "compose.yaml"), `services:
  a:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    volumes: [data:/data]
    networks: [one, two]
  b:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    depends_on: [a]
    networks: [two]
  c:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    depends_on: [b]
    volumes: [data:/data]
    networks: [one]
    deploy:
      replicas: 2
networks:
  one: {}
  two: {}
volumes:
  data: {}
`)
		up := e.startBG("up", "-d")
		// Kill berthd once the first container runs, while compose goes
		// on with the others.
		await(t, "a running", func() bool {
			for _, c := range e.containers("a") {
				if c.State == "running" {
					return true
				}
			}
			return false
		})
		n := len(e.containers(""))
		e.d.Kill9()
		if !up.waitFor(time.Minute, func(string) bool { return false }) && up.cmd.ProcessState == nil {
			t.Fatalf("up -d did not end after berthd's kill -9:\n%s", up.output())
		}
		t.Logf("killed with %d of 4 containers made; up -d exited %d", n, up.cmd.ProcessState.ExitCode())
		e.d.Start()
		e.compose("down", "-v")
		if cs, _ := e.api.ContainerList(ctxT(t), client.ContainerListOptions{All: true}); len(cs.Items) != 0 {
			t.Errorf("down -v after kill -9 left %d containers", len(cs.Items))
		}
		nets, _ := e.api.NetworkList(ctxT(t), client.NetworkListOptions{})
		for _, n := range nets.Items {
			if !slices.Contains([]string{"bridge", "host", "none"}, n.Name) {
				t.Errorf("down -v after kill -9 left network %s", n.Name)
			}
		}
		if vols, _ := e.api.VolumeList(ctxT(t), client.VolumeListOptions{}); len(vols.Items) != 0 {
			t.Errorf("down -v after kill -9 left %d volumes", len(vols.Items))
		}
		// No mount, shim or cgroup of them is left (dockerEnv's check),
		// no bridge of the project's networks.
		e.checkNoLeftovers(nil)
		ifaces, _ := net.Interfaces()
		for _, i := range ifaces {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && e.d.Networks.Pool.Contains(ipn.IP) && i.Name != e.d.Networks.Bridge {
					t.Errorf("down -v after kill -9 left interface %s (%s)", i.Name, ipn)
				}
			}
		}
	})
}
