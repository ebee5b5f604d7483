package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream"
	"k8s.io/streaming/pkg/httpstream/spdy"
)

// kubelet is a real kubelet (the version hack/install-deps.sh builds into
// _output/tools) in standalone mode: static pods from a manifest directory,
// no API server, berthd as its container runtime. Everything it writes is
// under one temp dir; its cgroups live below a root of the test's own; its
// API listens on free ports of 127.0.0.1.
type kubelet struct {
	t   testing.TB
	bin string
	// Dir holds the config, manifests, root dir, pod logs and the log.
	Dir       string
	Manifests string
	PodLogs   string
	// CgroupRoot is the kubelet's cgroupRoot (kubepods goes below it).
	CgroupRoot string
	NodeName   string
	Port       int
	ReadOnly   int
	Healthz    int
	logPath    string
	cmd        *exec.Cmd
	exited     chan struct{}
	// chainsBefore are the iptables chains named KUBE-* before the first
	// start; the ones the kubelet adds are removed at the end.
	chainsBefore map[string]bool
	// sysctlsBefore are the kernel settings the kubelet changes at start
	// (setupKernelTunables), restored at the end.
	sysctlsBefore map[string][]byte
	client        *http.Client
}

// kubeletOptions are what a run of the kubelet varies.
type kubeletOptions struct {
	// FeatureGates are set in the config (EventedPLEG,
	// PodAndContainerStatsFromCRI).
	FeatureGates map[string]bool
	// Extra are more KubeletConfiguration fields, as YAML lines.
	Extra []string
}

// newKubelet prepares a kubelet for the daemon d (which must have a CNI
// network); Start runs it. The cleanup stops it, unmounts what it mounted,
// removes its own cgroups (deepest first, so that a cgroup some runtime
// left below them stays and is reported) and the iptables chains it added.
func newKubelet(t testing.TB, d *daemon, cgroupRoot string) *kubelet {
	t.Helper()
	dir, err := os.MkdirTemp("", "bkube-")
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{
		t: t, bin: tool(t, "kubelet", "BERTH_KUBELET"),
		Dir: dir, Manifests: filepath.Join(dir, "manifests"), PodLogs: filepath.Join(dir, "pods"),
		CgroupRoot: cgroupRoot, NodeName: "berth-e2e-node",
		logPath: filepath.Join(dir, "kubelet.log"), chainsBefore: kubeChains(), sysctlsBefore: map[string][]byte{},
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			// The kubelet's self-signed serving certificate.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}},
	}
	for _, p := range []string{k.Manifests, k.PodLogs, filepath.Join(dir, "root")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The kubelet wants its cgroup root to exist in every hierarchy.
	for _, h := range cgroupHierarchies() {
		if err := os.MkdirAll(filepath.Join(h, cgroupRoot), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range kubeletSysctls {
		if b, err := os.ReadFile(filepath.Join("/proc/sys", name)); err == nil {
			k.sysctlsBefore[name] = b
		}
	}
	k.Port, k.ReadOnly, k.Healthz = freePort(t), freePort(t), freePort(t)
	t.Cleanup(func() {
		k.Stop()
		for name, b := range k.sysctlsBefore {
			os.WriteFile(filepath.Join("/proc/sys", name), b, 0o644)
		}
		if t.Failed() {
			if b, err := os.ReadFile(k.logPath); err == nil {
				t.Logf("kubelet log (%s), errors and warnings:\n%s", k.logPath, tail(grepLines(b, "E", "W"), 80))
			}
		}
		unmountAll(dir)
		syscall.Unmount(filepath.Join(dir, "root"), syscall.MNT_DETACH)
		k.removeCgroups()
		k.removeChains()
		if !t.Failed() {
			os.RemoveAll(dir)
		}
	})
	_ = d
	return k
}

// kubeletSysctls are the kernel settings a kubelet sets at start unless
// protectKernelDefaults (which would refuse to start on a machine that
// differs): a test must not leave a shared machine panicking on oops.
var kubeletSysctls = []string{
	"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes",
}

// cgroupHierarchies lists the cgroup v1 hierarchy mounts, or the v2 root.
func cgroupHierarchies() []string {
	if fileExists("/sys/fs/cgroup/cgroup.controllers") {
		return []string{"/sys/fs/cgroup"}
	}
	var out []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if fileExists(filepath.Join(p, "cgroup.procs")) {
			out = append(out, p)
		}
	}
	return out
}

// Start writes the config for o and runs the kubelet until its healthz
// answers.
func (k *kubelet) Start(d *daemon, o kubeletOptions) {
	k.t.Helper()
	var gates []string
	for _, g := range slices.Sorted(mapsKeys(o.FeatureGates)) {
		gates = append(gates, fmt.Sprintf("  %s: %v", g, o.FeatureGates[g]))
	}
	cfg := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: %s
containerRuntimeEndpoint: unix://%s
imageServiceEndpoint: unix://%s
staticPodPath: %s
podLogsDir: %s
failSwapOn: false
failCgroupV1: false
address: 127.0.0.1
port: %d
readOnlyPort: %d
healthzBindAddress: 127.0.0.1
healthzPort: %d
syncFrequency: 3s
fileCheckFrequency: 1s
nodeStatusUpdateFrequency: 3s
resolvConf: /etc/resolv.conf
serializeImagePulls: false
featureGates:
%s
%s
`, k.CgroupRoot, d.CRISocket, d.CRISocket, k.Manifests, k.PodLogs, k.Port, k.ReadOnly, k.Healthz,
		strings.Join(append(gates, "  KubeletSeparateDiskGC: true"), "\n"), strings.Join(o.Extra, "\n"))
	if !slices.ContainsFunc(o.Extra, func(l string) bool { return strings.HasPrefix(l, "evictionHard:") }) {
		// Far below what any test machine has: no evictions.
		cfg += `evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%"}` + "\n"
	}
	cfgPath := filepath.Join(k.Dir, "kubelet.yaml")
	writeFile(k.t, cfgPath, cfg)
	logf, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		k.t.Fatal(err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "=== kubelet start %s, config:\n%s\n", time.Now().Format(time.RFC3339Nano), cfg)
	k.cmd = exec.Command(k.bin, "--config", cfgPath, "--root-dir", filepath.Join(k.Dir, "root"),
		"--hostname-override", k.NodeName, "-v=4")
	k.cmd.Dir = k.Dir
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		k.t.Fatal(err)
	}
	k.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { cmd.Wait(); close(done) }(k.cmd, k.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", k.Healthz))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-k.exited:
			b, _ := os.ReadFile(k.logPath)
			k.t.Fatalf("kubelet exited during start-up:\n%s", tail(b, 40))
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("kubelet healthz did not answer within 60s (log %s)", k.logPath)
		}
	}
}

// Stop ends the kubelet with SIGTERM, SIGKILL after 3 s: without systemd
// (graceful node shutdown) it has nothing to do on the way out, and v1.37
// often lingers after SIGTERM. Its pods keep running, as on a node whose
// kubelet restarts.
func (k *kubelet) Stop() {
	if k.cmd == nil {
		return
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.exited:
	case <-time.After(3 * time.Second):
		k.cmd.Process.Signal(syscall.SIGKILL)
		<-k.exited
	}
	k.cmd = nil
}

// Log returns the kubelet's log so far.
func (k *kubelet) Log() string {
	b, _ := os.ReadFile(k.logPath)
	return string(b)
}

// removeCgroups removes the kubelet's cgroup tree, deepest first, skipping
// the container cgroups a runtime made (berth-*): those, and with them
// their parents, stay for the leak check to find.
func (k *kubelet) removeCgroups() {
	for _, h := range cgroupHierarchies() {
		var tree []string
		filepath.WalkDir(filepath.Join(h, k.CgroupRoot), func(p string, de os.DirEntry, err error) error {
			if err == nil && de.IsDir() {
				tree = append(tree, p)
			}
			return nil
		})
		for i := len(tree) - 1; i >= 0; i-- {
			if !strings.HasPrefix(filepath.Base(tree[i]), "berth-") {
				os.Remove(tree[i])
			}
		}
	}
}

// kubeChains lists the iptables and ip6tables chains named KUBE-*, as
// "iptables/table/chain".
func kubeChains() map[string]bool {
	out := map[string]bool{}
	for _, ipt := range []string{"iptables", "ip6tables"} {
		for _, table := range []string{"filter", "nat", "mangle"} {
			b, err := exec.Command(ipt+"-save", "-t", table).Output()
			if err != nil {
				continue
			}
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, ":KUBE-") {
					out[ipt+"/"+table+"/"+strings.Fields(l[1:])[0]] = true
				}
			}
		}
	}
	return out
}

// removeChains deletes the KUBE-* chains the kubelet added (its canary and
// firewall chains) with the rules that jump to them.
func (k *kubelet) removeChains() {
	for tc := range kubeChains() {
		if k.chainsBefore[tc] {
			continue
		}
		f := strings.SplitN(tc, "/", 3)
		ipt, table, chain := f[0], f[1], f[2]
		b, _ := exec.Command(ipt+"-save", "-t", table).Output()
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "-A ") && strings.HasSuffix(l, "-j "+chain) {
				args := splitQuoted(l)
				args[0] = "-D"
				exec.Command(ipt, append([]string{"-t", table}, args...)...).Run()
			}
		}
		exec.Command(ipt, "-t", table, "-F", chain).Run()
		exec.Command(ipt, "-t", table, "-X", chain).Run()
	}
}

// WriteManifest writes a static pod manifest atomically (the kubelet
// polls the directory and must not read half a file).
func (k *kubelet) WriteManifest(name, yaml string) {
	k.t.Helper()
	tmp := filepath.Join(k.Dir, name+".yaml.tmp")
	writeFile(k.t, tmp, yaml)
	if err := os.Rename(tmp, filepath.Join(k.Manifests, name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

// RemoveManifest deletes a static pod's manifest: the kubelet deletes the
// pod.
func (k *kubelet) RemoveManifest(name string) {
	k.t.Helper()
	if err := os.Remove(filepath.Join(k.Manifests, name+".yaml")); err != nil {
		k.t.Fatal(err)
	}
}

// PodName is the name of the static pod from manifest name.
func (k *kubelet) PodName(name string) string { return name + "-" + k.NodeName }

// kubePod is the part of a v1.Pod the tests read from the kubelet's /pods.
type kubePod struct {
	Metadata struct {
		Name      string `json:"name"`
		Namespace string `json:"namespace"`
		UID       string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Phase      string `json:"phase"`
		PodIP      string `json:"podIP"`
		Conditions []struct {
			Type   string `json:"type"`
			Status string `json:"status"`
		} `json:"conditions"`
		ContainerStatuses []kubeContainerStatus `json:"containerStatuses"`
	} `json:"status"`
}

type kubeContainerStatus struct {
	Name         string `json:"name"`
	Ready        bool   `json:"ready"`
	RestartCount int    `json:"restartCount"`
	ContainerID  string `json:"containerID"`
	// State has one key: waiting, running or terminated.
	State map[string]json.RawMessage `json:"state"`
}

// Ready reports the pod's Ready condition.
func (p *kubePod) Ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// Container returns the status of the named container.
func (p *kubePod) Container(name string) *kubeContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

// Pods lists the kubelet's pods with their status (GET /pods).
func (k *kubelet) Pods() map[string]*kubePod {
	k.t.Helper()
	var list struct {
		Items []*kubePod `json:"items"`
	}
	if err := k.getJSON(fmt.Sprintf("http://127.0.0.1:%d/pods", k.ReadOnly), &list); err != nil {
		k.t.Fatalf("kubelet /pods: %v", err)
	}
	out := map[string]*kubePod{}
	for _, p := range list.Items {
		out[p.Metadata.Name] = p
	}
	return out
}

// WaitPod polls /pods until cond holds for the pod (nil when it is not
// listed) and returns it; on timeout the test fails with the last status.
func (k *kubelet) WaitPod(name string, timeout time.Duration, what string, cond func(*kubePod) bool) *kubePod {
	k.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		p := k.Pods()[name]
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			b, _ := json.Marshal(p)
			k.t.Fatalf("pod %s: not %s within %v; last status %s", name, what, timeout, b)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (k *kubelet) url(path string) string {
	return fmt.Sprintf("https://127.0.0.1:%d%s", k.Port, path)
}

func (k *kubelet) getJSON(u string, v any) error {
	resp, err := k.client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// Get fetches a path of the kubelet's API and returns the body; a status
// other than 200 is an error.
func (k *kubelet) Get(path string) (string, error) {
	resp, err := k.client.Get(k.url(path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), err
}

// Run runs a command in a container through POST /run (the kubelet's
// one-shot exec) and returns its output.
func (k *kubelet) Run(pod, ctr string, cmd ...string) (string, error) {
	q := url.Values{"cmd": {strings.Join(cmd, " ")}}
	resp, err := k.client.Post(k.url(fmt.Sprintf("/run/default/%s/%s?%s", pod, ctr, q.Encode())), "", nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("run %v: %s: %s", cmd, resp.Status, b)
	}
	return string(b), nil
}

// spdyConnect upgrades a POST to the kubelet's path to SPDY with protocol.
func (k *kubelet) spdyConnect(path, protocol string) (httpstream.Connection, error) {
	rt, err := spdy.NewRoundTripper(&tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, k.url(path), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(httpstream.HeaderProtocolVersion, protocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return nil, fmt.Errorf("POST %s: %s: %s", path, resp.Status, b)
	}
	if got := resp.Header.Get(httpstream.HeaderProtocolVersion); got != protocol {
		return nil, fmt.Errorf("POST %s: protocol %q negotiated, want %q", path, got, protocol)
	}
	return rt.NewConnection(resp)
}

// Exec runs a command over the kubelet's streaming exec (/exec, SPDY,
// remote command protocol v4, no stdin, no tty) and returns its stdout and
// stderr once it ends; a non-zero exit is the error the server reports.
func (k *kubelet) Exec(pod, ctr string, cmd ...string) (stdout, stderr string, _ error) {
	q := url.Values{"command": cmd, "output": {"1"}, "error": {"1"}}
	conn, err := k.spdyConnect(fmt.Sprintf("/exec/default/%s/%s?%s", pod, ctr, q.Encode()), "v4.channel.k8s.io")
	if err != nil {
		return "", "", err
	}
	defer conn.Close()
	errStream, err := openStream(conn, remotecommand.StreamTypeError)
	if err != nil {
		return "", "", err
	}
	var outs [2]bytes.Buffer
	done := make(chan struct{}, 2)
	for i, typ := range []string{remotecommand.StreamTypeStdout, remotecommand.StreamTypeStderr} {
		s, err := openStream(conn, typ)
		if err != nil {
			return "", "", err
		}
		go func() { io.Copy(&outs[i], s); done <- struct{}{} }()
	}
	msg, _ := io.ReadAll(errStream)
	<-done
	<-done
	if err := statusError(msg); err != nil {
		return outs[0].String(), outs[1].String(), err
	}
	return outs[0].String(), outs[1].String(), nil
}

// Attach attaches to a container's stdin and stdout (/attach, SPDY, v4),
// writes input and waits until want appears on stdout.
func (k *kubelet) Attach(pod, ctr, input, want string, timeout time.Duration) error {
	q := url.Values{"input": {"1"}, "output": {"1"}}
	conn, err := k.spdyConnect(fmt.Sprintf("/attach/default/%s/%s?%s", pod, ctr, q.Encode()), "v4.channel.k8s.io")
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := openStream(conn, remotecommand.StreamTypeError); err != nil {
		return err
	}
	out, err := openStream(conn, remotecommand.StreamTypeStdout)
	if err != nil {
		return err
	}
	in, err := openStream(conn, remotecommand.StreamTypeStdin)
	if err != nil {
		return err
	}
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for {
			n, err := out.Read(buf)
			b.Write(buf[:n])
			if strings.Contains(b.String(), want) || err != nil {
				got <- b.String()
				return
			}
		}
	}()
	if _, err := io.WriteString(in, input); err != nil {
		return err
	}
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			return fmt.Errorf("attach: stdout ended with %q, without %q", s, want)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("attach: %q did not come back within %v", want, timeout)
	}
}

func openStream(conn httpstream.Connection, typ string) (httpstream.Stream, error) {
	h := http.Header{}
	h.Set(remotecommand.StreamType, typ)
	s, err := conn.CreateStream(h)
	if err != nil {
		return nil, fmt.Errorf("create %s stream: %w", typ, err)
	}
	if typ == remotecommand.StreamTypeError {
		s.Close() // the client writes nothing on it
	}
	return s, nil
}

// statusError decodes what the server wrote on the error stream: a
// metav1.Status, Success or not.
func statusError(msg []byte) error {
	if len(bytes.TrimSpace(msg)) == 0 {
		return nil
	}
	var st struct {
		Status  string `json:"status"`
		Message string `json:"message"`
	}
	if json.Unmarshal(msg, &st) == nil {
		if st.Status == "Success" {
			return nil
		}
		return fmt.Errorf("%s", st.Message)
	}
	return fmt.Errorf("%s", msg)
}

// PortForward opens a port-forward session to the pod's port and sends
// request on it, returning what comes back until the pod side closes.
func (k *kubelet) PortForward(pod string, port int, request string) (string, error) {
	conn, err := k.spdyConnect(fmt.Sprintf("/portForward/default/%s", pod), portforward.ProtocolV1Name)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	h := http.Header{}
	h.Set(portforward.StreamType, portforward.StreamTypeError)
	h.Set(portforward.PortHeader, strconv.Itoa(port))
	h.Set(portforward.PortForwardRequestIDHeader, "0")
	errStream, err := conn.CreateStream(h)
	if err != nil {
		return "", err
	}
	errStream.Close()
	h.Set(portforward.StreamType, portforward.StreamTypeData)
	data, err := conn.CreateStream(h)
	if err != nil {
		return "", err
	}
	errc := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(errStream); errc <- b }()
	if _, err := io.WriteString(data, request); err != nil {
		return "", err
	}
	out, _ := io.ReadAll(data)
	select {
	case msg := <-errc:
		if len(msg) > 0 {
			return string(out), fmt.Errorf("port forward: %s", msg)
		}
	case <-time.After(time.Second):
	}
	return string(out), nil
}

// Metric returns the value of a counter or the _count of a histogram from
// the kubelet's /metrics, summed over label sets; -1 when absent.
func (k *kubelet) Metric(name string) float64 {
	k.t.Helper()
	body, err := k.Get("/metrics")
	if err != nil {
		k.t.Fatalf("kubelet /metrics: %v", err)
	}
	sum, found := 0.0, false
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		metric, _, _ := strings.Cut(f[0], "{")
		if metric != name {
			continue
		}
		v, err := strconv.ParseFloat(f[1], 64)
		if err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return -1
	}
	return sum
}

// summary is the part of the kubelet's /stats/summary the tests check.
type summary struct {
	Node struct {
		Runtime struct {
			ImageFs *fsStats `json:"imageFs"`
		} `json:"runtime"`
	} `json:"node"`
	Pods []struct {
		PodRef struct {
			Name string `json:"name"`
		} `json:"podRef"`
		CPU     *cpuStats `json:"cpu"`
		Memory  *memStats `json:"memory"`
		Network *struct {
			Interfaces []struct {
				Name    string  `json:"name"`
				RxBytes *uint64 `json:"rxBytes"`
				TxBytes *uint64 `json:"txBytes"`
			} `json:"interfaces"`
			RxBytes *uint64 `json:"rxBytes"`
			TxBytes *uint64 `json:"txBytes"`
		} `json:"network"`
		Containers []struct {
			Name   string    `json:"name"`
			CPU    *cpuStats `json:"cpu"`
			Memory *memStats `json:"memory"`
			Rootfs *fsStats  `json:"rootfs"`
			Logs   *fsStats  `json:"logs"`
		} `json:"containers"`
		EphemeralStorage *fsStats `json:"ephemeral-storage"`
	} `json:"pods"`
}

type cpuStats struct {
	UsageNanoCores       *uint64 `json:"usageNanoCores"`
	UsageCoreNanoSeconds *uint64 `json:"usageCoreNanoSeconds"`
}

type memStats struct {
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
	UsageBytes      *uint64 `json:"usageBytes"`
}

type fsStats struct {
	UsedBytes     *uint64 `json:"usedBytes"`
	CapacityBytes *uint64 `json:"capacityBytes"`
}

// Summary fetches /stats/summary.
func (k *kubelet) Summary() (*summary, error) {
	var s summary
	if err := k.getJSON(k.url("/stats/summary"), &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Log returns berthd's log so far.
func (d *daemon) Log() string {
	b, _ := os.ReadFile(d.logPath)
	return string(b)
}

func mapsKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// grepLines keeps the klog lines of the given severities (E, W, ...).
func grepLines(b []byte, sev ...string) []byte {
	var out bytes.Buffer
	for _, l := range strings.Split(string(b), "\n") {
		for _, s := range sev {
			if len(l) > 5 && strings.HasPrefix(l, s) && l[1] >= '0' && l[1] <= '9' {
				out.WriteString(l + "\n")
				break
			}
		}
	}
	return out.Bytes()
}
