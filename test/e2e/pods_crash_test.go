package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// gatePluginSource is a CNI plugin that passes its chain through, except
// that for a command whose hold-<COMMAND> file exists in its "gate"
// directory it writes at-<COMMAND> there and waits until its parent dies
// (berthd killed while a plugin runs), then fails. The test moves it in
// the chain to stop berthd before or after the real plugins did their
// work.
const gatePluginSource = `package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

func main() {
	cmd := os.Getenv("CNI_COMMAND")
	stdin, _ := io.ReadAll(os.Stdin)
	if cmd == "VERSION" {
		fmt.Print(` + "`" + `{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}` + "`" + `)
		return
	}
	var c struct {
		CNIVersion string          ` + "`json:\"cniVersion\"`" + `
		Gate       string          ` + "`json:\"gate\"`" + `
		PrevResult json.RawMessage ` + "`json:\"prevResult\"`" + `
	}
	json.Unmarshal(stdin, &c)
	if c.Gate != "" {
		if _, err := os.Stat(filepath.Join(c.Gate, "hold-"+cmd)); err == nil {
			parent := os.Getppid()
			os.WriteFile(filepath.Join(c.Gate, "at-"+cmd), []byte(os.Getenv("CNI_CONTAINERID")), 0o644)
			for os.Getppid() == parent {
				time.Sleep(10 * time.Millisecond)
			}
			fmt.Print(` + "`" + `{"cniVersion":"1.0.0","code":11,"msg":"runtime died"}` + "`" + `)
			os.Exit(1)
		}
	}
	if cmd != "ADD" {
		return
	}
	res := map[string]any{}
	json.Unmarshal(c.PrevResult, &res)
	res["cniVersion"] = c.CNIVersion
	out, _ := json.Marshal(res)
	os.Stdout.Write(out)
}
`

// buildGatePlugin builds the gate plugin as <dir>/berthgate.
func buildGatePlugin(t testing.TB) string {
	t.Helper()
	src, bin := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(src, "go.mod"), "module berthgate\n\ngo 1.26\n")
	writeFile(t, filepath.Join(src, "main.go"), gatePluginSource)
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, "berthgate"), ".")
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the gate plugin: %v\n%s", err, out)
	}
	return bin
}

// gatedNetwork is the test network with the gate plugin in its chain.
type gatedNetwork struct {
	n    *testNetwork
	gate string // the gate's directory
	conf string // the conflist
	orig []json.RawMessage
	name string
	ver  string
}

func newGatedNetwork(t testing.TB, n *testNetwork) *gatedNetwork {
	t.Helper()
	g := &gatedNetwork{n: n, gate: t.TempDir(), conf: filepath.Join(n.ConfDir, "10-berth.conflist")}
	b, err := os.ReadFile(g.conf)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string            `json:"cniVersion"`
		Name       string            `json:"name"`
		Plugins    []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatal(err)
	}
	g.orig, g.name, g.ver = list.Plugins, list.Name, list.CNIVersion
	n.BinDir = buildGatePlugin(t) + string(os.PathListSeparator) + n.BinDir
	return g
}

// place writes the conflist with the gate first or last in the chain
// (berthd reads it at every ADD; a DEL uses the one cached at ADD).
func (g *gatedNetwork) place(t testing.TB, first bool) {
	t.Helper()
	gate, _ := json.Marshal(map[string]string{"type": "berthgate", "gate": g.gate})
	plugins := slices.Clone(g.orig)
	if first {
		plugins = append([]json.RawMessage{gate}, plugins...)
	} else {
		plugins = append(plugins, gate)
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": g.ver, "name": g.name, "plugins": plugins})
	tmp := g.conf + ".tmp"
	writeFile(t, tmp, string(b))
	if err := os.Rename(tmp, g.conf); err != nil {
		t.Fatal(err)
	}
}

// hold makes the gate stop the given CNI command; release lets it pass.
func (g *gatedNetwork) hold(t testing.TB, cmd string) {
	writeFile(t, filepath.Join(g.gate, "hold-"+cmd), "")
	os.Remove(filepath.Join(g.gate, "at-"+cmd))
}

func (g *gatedNetwork) release() {
	for _, cmd := range []string{"ADD", "DEL"} {
		os.Remove(filepath.Join(g.gate, "hold-"+cmd))
		os.Remove(filepath.Join(g.gate, "at-"+cmd))
	}
}

// reached waits until the gate holds cmd.
func (g *gatedNetwork) reached(t testing.TB, cmd string) {
	t.Helper()
	if !waitFor(60*time.Second, func() bool { return fileExists(filepath.Join(g.gate, "at-"+cmd)) }) {
		t.Fatalf("the gate never saw %s", cmd)
	}
}

// TestKill9DuringPodCreationAndStop kills berthd at each step of
// RunPodSandbox and StopPodSandbox: inside the CNI ADD before any plugin
// allocated anything and after all of them did (a lease, a veth, portmap
// and firewall rules, none of which libcni has cached), inside the CNI DEL
// before and after the plugins released, and at evenly spread moments of
// both calls. After each kill berthd restarts, every pod it lists is
// stopped and removed, as the kubelet does, and nothing may be left: no
// lease, veth, netns pin, mount, cgroup, shim or pause holder, iptables
// rule, CNI cache entry or intent.
func TestKill9DuringPodCreationAndStop(t *testing.T) {
	var g *gatedNetwork
	e := newPodEnvNet(t, func(n *testNetwork) { g = newGatedNetwork(t, n) })
	t.Cleanup(g.release)
	g.place(t, true)
	seq := 0
	podCfg := func(sharedPID bool) *runtimeapi.PodSandboxConfig {
		seq++
		name := fmt.Sprintf("crash%d", seq)
		ns := &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}
		if sharedPID {
			ns.Pid = runtimeapi.NamespaceMode_POD
		}
		return &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: "uid-" + name},
			Hostname:     name,
			LogDirectory: filepath.Join(e.LogDir, name),
			PortMappings: []*runtimeapi.PortMapping{{ContainerPort: 80, HostPort: int32(freePort(t))}},
			Linux: &runtimeapi.LinuxPodSandboxConfig{
				CgroupParent:    e.CgParent + "-" + name,
				SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: ns},
			},
		}
	}
	// runPod runs RunPodSandbox in the background; done gets its error.
	runPod := func(cfg *runtimeapi.PodSandboxConfig) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := e.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			done <- err
		}()
		return done
	}
	// runPodWithContainer runs a pod and a container in it, as the kubelet
	// would before a stop.
	runPodWithContainer := func(sharedPID bool) string {
		cfg := podCfg(sharedPID)
		r, err := e.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
		if err != nil {
			t.Fatalf("run pod: %v", err)
		}
		e.RunContainer(r.PodSandboxId, cfg, "sleeper", "trap 'exit 0' TERM; while true; do sleep 1; done", containerOptions{})
		return r.PodSandboxId
	}
	stopPod := func(id string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := e.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			done <- err
		}()
		return done
	}
	// restartAndClean restarts the killed berthd and removes what it lists,
	// as the kubelet does for pods it no longer wants.
	restartAndClean := func(t *testing.T) {
		t.Helper()
		g.release()
		e.d.Start()
		for _, sb := range e.sandboxes(t) {
			if _, err := e.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				t.Errorf("stop pod %s after the restart: %v", sb.Id, err)
			}
			if _, err := e.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
				t.Errorf("remove pod %s after the restart: %v", sb.Id, err)
			}
		}
		if left := e.crashLeftovers(g.n); len(left) > 0 {
			t.Errorf("left behind:\n%s", strings.Join(left, "\n"))
		}
	}

	// What a pod's creation and stop cost here, to spread the kills over.
	var runTook, stopTook []time.Duration
	for range 3 {
		start := time.Now()
		id := runPodWithContainer(false)
		runTook = append(runTook, time.Since(start))
		start = time.Now()
		if err := <-stopPod(id); err != nil {
			t.Fatal(err)
		}
		stopTook = append(stopTook, time.Since(start))
		if _, err := e.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(runTook)
	slices.Sort(stopTook)
	// runTook includes the container's creation: the pod is about half.
	runT, stopT := runTook[1]/2, stopTook[1]
	t.Logf("RunPodSandbox ~%v, StopPodSandbox ~%v", runT, stopT)

	for _, tc := range []struct {
		name  string
		first bool
	}{
		{"in the CNI ADD, before any plugin ran", true},
		{"in the CNI ADD, after every plugin ran", false},
	} {
		t.Run("RunPodSandbox: "+tc.name, func(t *testing.T) {
			g.place(t, tc.first)
			g.hold(t, "ADD")
			done := runPod(podCfg(false))
			g.reached(t, "ADD")
			e.d.Kill9()
			<-done
			restartAndClean(t)
		})
	}
	for _, tc := range []struct {
		name  string
		first bool
	}{
		// DEL runs the chain backwards: last in the list, first to run.
		{"in the CNI DEL, before any plugin released", false},
		{"in the CNI DEL, after every plugin released", true},
	} {
		t.Run("StopPodSandbox: "+tc.name, func(t *testing.T) {
			g.place(t, tc.first)
			id := runPodWithContainer(true)
			g.hold(t, "DEL")
			done := stopPod(id)
			g.reached(t, "DEL")
			e.d.Kill9()
			<-done
			restartAndClean(t)
		})
	}
	g.place(t, true)
	const steps = 6
	for i := range steps + 1 {
		// Pods that share their PID namespace have a pause holder too.
		shared := i%2 == 1
		at := runT * time.Duration(i) / steps
		t.Run(fmt.Sprintf("RunPodSandbox: kill after %d/%d of it (%v)", i, steps, at.Round(time.Millisecond)), func(t *testing.T) {
			done := runPod(podCfg(shared))
			time.Sleep(at)
			e.d.Kill9()
			<-done
			restartAndClean(t)
		})
	}
	for i := range steps + 1 {
		shared := i%2 == 0
		at := stopT * time.Duration(i) / steps
		t.Run(fmt.Sprintf("StopPodSandbox: kill after %d/%d of it (%v)", i, steps, at.Round(time.Millisecond)), func(t *testing.T) {
			id := runPodWithContainer(shared)
			done := stopPod(id)
			time.Sleep(at)
			e.d.Kill9()
			<-done
			restartAndClean(t)
		})
	}
}

// crashLeftovers lists what pods left on the machine once every pod is
// removed: leases, veths, pins, mounts, cgroups, processes, iptables
// rules of the test's network, CNI cache entries and intents.
func (e *podEnv) crashLeftovers(n *testNetwork) []string {
	var left []string
	if len(e.sandboxes(e.t)) > 0 {
		left = append(left, "berthd still lists pods")
	}
	for _, ip := range n.Leases() {
		left = append(left, "IPAM lease "+ip)
	}
	for _, v := range n.Veths() {
		left = append(left, "veth "+v)
	}
	for _, kind := range []string{"net", "ipc", "uts", "pid", "user"} {
		ents, _ := os.ReadDir(filepath.Join(e.d.State, "ns", kind))
		for _, ent := range ents {
			left = append(left, "pinned "+kind+" namespace "+ent.Name())
		}
	}
	base := filepath.Dir(e.d.Root)
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], base+"/") {
				left = append(left, "mount "+f[4])
			}
		}
	}
	for _, cg := range e.cgroups(strings.TrimPrefix(e.CgParent, "/")) {
		left = append(left, "cgroup "+cg)
	}
	for _, pid := range e.ownProcesses() {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		left = append(left, fmt.Sprintf("process %d %s", pid, strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")))
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "-A ") {
				continue
			}
			hit := strings.Contains(l, `name: \"`+n.Name+`\"`)
			for _, a := range splitQuoted(l) {
				ip, _, err := net.ParseCIDR(a)
				if err != nil {
					ip = net.ParseIP(strings.Split(a, ":")[0])
				}
				if ip != nil && n.Subnet.Contains(ip) && !ip.Equal(n.Subnet.IP) {
					hit = true
				}
			}
			if hit {
				left = append(left, "iptables rule "+l)
			}
		}
	}
	for _, dir := range []string{"cni/cache/results", "cni/cache/intents"} {
		ents, _ := os.ReadDir(filepath.Join(e.d.Root, dir))
		for _, ent := range ents {
			left = append(left, dir+"/"+ent.Name())
		}
	}
	return left
}
