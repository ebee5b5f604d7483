package cni

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// fakeBin holds the fake plugin under the names the tests' configs use.
var fakeBin string

func TestMain(m *testing.M) {
	if os.Getenv(attachHelperEnv) != "" {
		os.Exit(attachHelper())
	}
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-cni-fake-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "fakebridge")
	build := exec.Command("go", "build", "-buildvcs=false", "-o", bin, "./testdata/fakeplugin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build fake cni plugin: %v\n%s", err, out)
		return 1
	}
	for _, name := range []string{"fakeportmap", "loopback"} {
		if err := os.Link(bin, filepath.Join(dir, name)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fakeBin = dir
	code := m.Run()
	if realPluginsBuilt {
		os.RemoveAll(realPluginsDir)
	}
	return code
}

// invocation mirrors testdata/fakeplugin's record.
type invocation struct {
	Plugin      string          `json:"plugin"`
	Command     string          `json:"command"`
	ContainerID string          `json:"containerID"`
	NetNS       string          `json:"netns"`
	IfName      string          `json:"ifName"`
	Args        string          `json:"args"`
	Path        string          `json:"path"`
	Stdin       json.RawMessage `json:"stdin"`
}

// runtimeConfig returns the stdin's runtimeConfig, nil if none.
func (i invocation) runtimeConfig(t *testing.T) map[string]any {
	t.Helper()
	var s struct {
		RuntimeConfig map[string]any `json:"runtimeConfig"`
	}
	if err := json.Unmarshal(i.Stdin, &s); err != nil {
		t.Fatalf("decode stdin of %s %s: %v", i.Plugin, i.Command, err)
	}
	return s.RuntimeConfig
}

func (i invocation) String() string { return i.Command + " " + i.Plugin + " " + i.IfName }

type env struct {
	m       *Manager
	confDir string
	netns   string
	record  string
}

// newEnv makes a Manager on temp dirs with the fake plugins and a fake
// pinned netns (a plain file: the fake plugins never enter it).
func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{
		confDir: filepath.Join(dir, "net.d"),
		netns:   filepath.Join(dir, "netns", "pod1"),
		record:  filepath.Join(dir, "record.jsonl"),
	}
	t.Setenv("FAKECNI_RECORD", e.record)
	for _, d := range []string{e.confDir, filepath.Dir(e.netns)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(e.netns, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := New(Config{
		ConfDir:  e.confDir,
		BinDirs:  []string{filepath.Join(dir, "nothing-here"), fakeBin},
		CacheDir: filepath.Join(dir, "cache"),
		NetNSDir: filepath.Dir(e.netns),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.m = m
	return e
}

func (e *env) writeConf(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.confDir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// calls returns the recorded invocations and empties the record.
func (e *env) calls(t *testing.T) []invocation {
	t.Helper()
	f, err := os.Open(e.record)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []invocation
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var inv invocation
		if err := json.Unmarshal(sc.Bytes(), &inv); err != nil {
			t.Fatalf("record line %q: %v", sc.Text(), err)
		}
		out = append(out, inv)
	}
	if err := os.Remove(e.record); err != nil {
		t.Fatal(err)
	}
	return out
}

func sequence(calls []invocation) string {
	var s []string
	for _, c := range calls {
		s = append(s, c.String())
	}
	return strings.Join(s, ", ")
}

const twoPlugins = `{
  "cniVersion": "1.0.0",
  "name": "testnet",
  "plugins": [
    {"type": "fakebridge", "ip": "10.99.0.5/16", "ip6": "fd00::5/64", "gateway": "10.99.0.1"},
    {"type": "fakeportmap", "capabilities": {"portMappings": true}}
  ]
}`

func podArgs(netns string) PodArgs {
	return PodArgs{
		ID:           "c0ffee",
		NetNS:        netns,
		PodName:      "web",
		PodNamespace: "default",
		PodUID:       "uid-1",
		PortMappings: []PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
			{HostPort: 0, ContainerPort: 81}, // no hostPort: not a mapping
			{HostPort: 5353, ContainerPort: 53, Protocol: "udp", HostIP: "127.0.0.1"},
		},
	}
}

func TestAttachPassesArgsAndReturnsPodAddresses(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)

	res, err := e.m.Attach(t.Context(), podArgs(e.netns))
	if err != nil {
		t.Fatal(err)
	}
	want := Result{
		Network:   "testnet",
		Interface: "eth0",
		MAC:       "02:00:00:00:00:02",
		IPs: []IPConfig{
			{Address: netip.MustParsePrefix("10.99.0.5/16"), Gateway: netip.MustParseAddr("10.99.0.1")},
			{Address: netip.MustParsePrefix("fd00::5/64")},
		},
		DNS: DNS{Servers: []string{"10.99.0.10"}},
	}
	if !reflect.DeepEqual(res, want) {
		t.Errorf("result:\n got %+v\nwant %+v", res, want)
	}
	if got := res.Addrs(); len(got) != 2 || got[0].String() != "10.99.0.5" || got[1].String() != "fd00::5" {
		t.Errorf("Addrs() = %v", got)
	}

	calls := e.calls(t)
	if got, want := sequence(calls), "ADD loopback lo, ADD fakebridge eth0, ADD fakeportmap eth0"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
	wantArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;K8S_POD_INFRA_CONTAINER_ID=c0ffee;K8S_POD_UID=uid-1"
	for _, c := range calls {
		if c.Args != wantArgs || c.ContainerID != "c0ffee" || c.NetNS != e.netns {
			t.Errorf("%s: CNI_ARGS %q CNI_CONTAINERID %q CNI_NETNS %q", c, c.Args, c.ContainerID, c.NetNS)
		}
		if !strings.HasSuffix(c.Path, ":"+fakeBin) {
			t.Errorf("%s: CNI_PATH %q does not list %s", c, c.Path, fakeBin)
		}
	}
	// Only the plugin declaring the capability gets runtimeConfig.
	if rc := calls[1].runtimeConfig(t); rc != nil {
		t.Errorf("fakebridge got runtimeConfig %v", rc)
	}
	rc, _ := json.Marshal(calls[2].runtimeConfig(t))
	wantRC := `{"portMappings":[{"containerPort":80,"hostPort":8080,"protocol":"tcp"},{"containerPort":53,"hostIP":"127.0.0.1","hostPort":5353,"protocol":"udp"}]}`
	if string(rc) != wantRC {
		t.Errorf("fakeportmap runtimeConfig:\n got %s\nwant %s", rc, wantRC)
	}
	// The chained plugin sees the bridge's result.
	var stdin struct {
		PrevResult struct {
			IPs []struct{ Address string } `json:"ips"`
		} `json:"prevResult"`
	}
	if err := json.Unmarshal(calls[2].Stdin, &stdin); err != nil || len(stdin.PrevResult.IPs) != 3 {
		t.Errorf("fakeportmap prevResult: %s (%v)", calls[2].Stdin, err)
	}
}

func TestAttachFailureDeletesWhatItAdded(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"type": "fakeportmap"`, `"type": "fakeportmap", "failAdd": true, "failDel": true`, 1))

	// fakeportmap fails DEL too: the bridge's DEL must run all the same.
	_, err := e.m.Attach(t.Context(), podArgs(e.netns))
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "fake add failure") {
		t.Fatalf("Attach error = %v, want Unavailable with the plugin's message", err)
	}
	calls := e.calls(t)
	if got, want := sequence(calls),
		"ADD loopback lo, ADD fakebridge eth0, ADD fakeportmap eth0, DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo"; got != want {
		t.Fatalf("calls: %s\nwant %s", got, want)
	}
	// Nothing is cached for a failed ADD: the DELs get the bridge's output
	// as prevResult so that plugins can find what they set up.
	for _, c := range calls[3:5] {
		var stdin struct {
			Name       string `json:"name"`
			PrevResult struct {
				IPs []struct{ Address string } `json:"ips"`
			} `json:"prevResult"`
		}
		if err := json.Unmarshal(c.Stdin, &stdin); err != nil || stdin.Name != "testnet" ||
			len(stdin.PrevResult.IPs) != 3 || stdin.PrevResult.IPs[2].Address != "10.99.0.5/16" {
			t.Errorf("%s stdin %s: want the testnet config with the bridge's result (%v)", c, c.Stdin, err)
		}
	}
	assertCacheEmpty(t, e)
}

func TestAttachMissingPluginRunsNothing(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"fakeportmap"`, `"nosuchplugin"`, 1))
	_, err := e.m.Attach(t.Context(), podArgs(e.netns))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), `"nosuchplugin" not found`) {
		t.Fatalf("Attach error = %v, want FailedPrecondition naming the plugin", err)
	}
	if calls := e.calls(t); len(calls) != 0 {
		t.Fatalf("plugins ran: %s", sequence(calls))
	}
}

func TestAttachRefusesBadInput(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	hostLink := filepath.Join(filepath.Dir(e.netns), "host")
	if err := os.Symlink("/proc/self/ns/net", hostLink); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "ns")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		edit  func(*PodArgs)
		class func(error) bool
	}{
		{"empty id", func(a *PodArgs) { a.ID = "" }, errdefs.IsInvalidArgument},
		{"args injection", func(a *PodArgs) { a.PodName = "web;K8S_POD_NAMESPACE=kube-system" }, errdefs.IsInvalidArgument},
		{"host port out of range", func(a *PodArgs) { a.PortMappings[0].HostPort = 70000 }, errdefs.IsInvalidArgument},
		{"container port zero", func(a *PodArgs) { a.PortMappings[0].ContainerPort = 0 }, errdefs.IsInvalidArgument},
		{"protocol", func(a *PodArgs) { a.PortMappings[0].Protocol = "icmp" }, errdefs.IsInvalidArgument},
		{"no netns", func(a *PodArgs) { a.NetNS = "" }, errdefs.IsInvalidArgument},
		{"netns outside the dir", func(a *PodArgs) { a.NetNS = outside }, errdefs.IsInvalidArgument},
		{"netns dir itself", func(a *PodArgs) { a.NetNS = filepath.Dir(e.netns) }, errdefs.IsInvalidArgument},
		{"netns escaping the dir", func(a *PodArgs) { a.NetNS = filepath.Dir(e.netns) + "/../netns/../x" }, errdefs.IsInvalidArgument},
		{"host netns", func(a *PodArgs) { a.NetNS = hostLink }, errdefs.IsInvalidArgument},
		{"missing netns", func(a *PodArgs) { a.NetNS += "-gone" }, errdefs.IsNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := podArgs(e.netns)
			tc.edit(&args)
			if _, err := e.m.Attach(t.Context(), args); !tc.class(err) {
				t.Fatalf("Attach error = %v, wrong class", err)
			}
			if calls := e.calls(t); len(calls) != 0 {
				t.Fatalf("plugins ran: %s", sequence(calls))
			}
		})
	}
}

func TestDetachUsesCachedConfigAndArgs(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	if _, err := e.m.Attach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	e.calls(t)

	// The node's config changes and the namespace is gone before the pod
	// is stopped: DEL must still reach the plugins that ran ADD, with the
	// arguments ADD had and an empty CNI_NETNS.
	if err := os.Remove(filepath.Join(e.confDir, "10-test.conflist")); err != nil {
		t.Fatal(err)
	}
	e.writeConf(t, "10-other.conflist", `{"cniVersion":"1.0.0","name":"othernet","plugins":[{"type":"fakebridge"}]}`)
	if err := os.Remove(e.netns); err != nil {
		t.Fatal(err)
	}
	args := podArgs(e.netns)
	args.PortMappings = nil // a caller that lost them after a restart
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	calls := e.calls(t)
	if got, want := sequence(calls), "DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
	for _, c := range calls {
		if c.NetNS != "" {
			t.Errorf("%s: CNI_NETNS %q, want empty for a gone namespace", c, c.NetNS)
		}
	}
	var stdin struct {
		Name       string          `json:"name"`
		PrevResult json.RawMessage `json:"prevResult"`
	}
	if err := json.Unmarshal(calls[0].Stdin, &stdin); err != nil || stdin.Name != "testnet" || len(stdin.PrevResult) == 0 {
		t.Errorf("DEL stdin: name %q prevResult %s (%v), want the cached testnet result", stdin.Name, stdin.PrevResult, err)
	}
	if rc := calls[0].runtimeConfig(t); rc["portMappings"] == nil {
		t.Errorf("DEL fakeportmap runtimeConfig %v, want the cached port mappings", rc)
	}
	assertCacheEmpty(t, e)

	// Again: nothing cached, so DEL runs with the current config; plugins
	// treat it as a no-op and Detach succeeds.
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	if got, want := sequence(e.calls(t)), "DEL fakebridge eth0, DEL loopback lo"; got != want {
		t.Fatalf("second Detach calls: %s, want %s", got, want)
	}

	// No config at all and nothing cached: nothing to do.
	if err := os.Remove(filepath.Join(e.confDir, "10-other.conflist")); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatalf("Detach without config: %v", err)
	}
}

func TestDetachFailureIsReported(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"type": "fakebridge"`, `"type": "fakebridge", "failDel": true`, 1))
	if _, err := e.m.Attach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	err := e.m.Detach(t.Context(), podArgs(e.netns))
	if !errdefs.IsUnknown(err) || !strings.Contains(err.Error(), "fake del failure") {
		t.Fatalf("Detach error = %v, want Unknown with the plugin's message", err)
	}
	// The cache entry stays so a retry still has the ADD's result.
	if _, err := e.m.Status(t.Context(), "c0ffee", e.netns); err != nil {
		t.Fatalf("Status after a failed Detach: %v", err)
	}
}

func TestStatusChecksAndReturnsCachedResult(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	if _, err := e.m.Status(t.Context(), "c0ffee", e.netns); !errdefs.IsNotFound(err) {
		t.Fatalf("Status before Attach = %v, want NotFound", err)
	}
	added, err := e.m.Attach(t.Context(), podArgs(e.netns))
	if err != nil {
		t.Fatal(err)
	}
	e.calls(t)
	got, err := e.m.Status(t.Context(), "c0ffee", e.netns)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, added) {
		t.Errorf("Status = %+v, want the Attach result %+v", got, added)
	}
	calls := e.calls(t)
	if got, want := sequence(calls), "CHECK fakebridge eth0, CHECK fakeportmap eth0"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
	if calls[0].Args == "" || calls[1].runtimeConfig(t)["portMappings"] == nil {
		t.Errorf("CHECK lacks the ADD's args: %q %s", calls[0].Args, calls[1].Stdin)
	}
	if err := e.m.Detach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Status(t.Context(), "c0ffee", e.netns); !errdefs.IsNotFound(err) {
		t.Fatalf("Status after Detach = %v, want NotFound", err)
	}
}

// TestConcurrentAttachDetach runs pods in parallel through one Manager (run
// it with -race): each gets its own ADD and DEL with its own arguments.
func TestConcurrentAttachDetach(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	const pods = 8
	errs := make(chan error, pods)
	for i := range pods {
		go func() {
			args := podArgs(e.netns)
			args.ID = fmt.Sprintf("pod%d", i)
			args.PodName = args.ID
			if _, err := e.m.Attach(t.Context(), args); err != nil {
				errs <- err
				return
			}
			if _, err := e.m.Status(t.Context(), args.ID, args.NetNS); err != nil {
				errs <- err
				return
			}
			errs <- e.m.Detach(t.Context(), args)
		}()
	}
	for range pods {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	perPod := map[string][]string{}
	for _, c := range e.calls(t) {
		if !strings.Contains(c.Args, "K8S_POD_NAME="+c.ContainerID+";") {
			t.Errorf("%s for %s has CNI_ARGS %q", c, c.ContainerID, c.Args)
		}
		perPod[c.ContainerID] = append(perPod[c.ContainerID], c.Command+" "+c.Plugin)
	}
	want := "ADD loopback, ADD fakebridge, ADD fakeportmap, CHECK fakebridge, CHECK fakeportmap, DEL fakeportmap, DEL fakebridge, DEL loopback"
	for i := range pods {
		if got := strings.Join(perPod[fmt.Sprintf("pod%d", i)], ", "); got != want {
			t.Errorf("pod%d: %s\nwant %s", i, got, want)
		}
	}
	assertCacheEmpty(t, e)
}

func TestGCDetachesUnknownPods(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	for _, id := range []string{"keep1", "stale1", "stale2"} {
		args := podArgs(e.netns)
		args.ID = id
		if _, err := e.m.Attach(t.Context(), args); err != nil {
			t.Fatal(err)
		}
	}
	e.calls(t)
	// stale3's namespace is gone by the time GC runs.
	gone := filepath.Join(filepath.Dir(e.netns), "gone")
	args := podArgs(gone)
	args.ID = "stale3"
	if err := os.WriteFile(gone, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := e.m.Attach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(gone); err != nil {
		t.Fatal(err)
	}
	e.calls(t)

	done, err := e.m.GC(t.Context(), []string{"keep1"})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(done)
	if !slices.Equal(done, []string{"stale1", "stale2", "stale3"}) {
		t.Errorf("GC detached %v", done)
	}
	for _, c := range e.calls(t) {
		if c.Command != "DEL" || c.ContainerID == "keep1" {
			t.Errorf("GC ran %s for %s", c, c.ContainerID)
		}
		if c.ContainerID == "stale3" && c.NetNS != "" {
			t.Errorf("GC passed the gone namespace %q", c.NetNS)
		}
		if c.ContainerID != "stale3" && c.NetNS != e.netns {
			t.Errorf("GC passed namespace %q, want the cached %q", c.NetNS, e.netns)
		}
	}
	if _, err := e.m.Status(t.Context(), "keep1", e.netns); err != nil {
		t.Errorf("kept pod lost its attachment: %v", err)
	}
	if again, err := e.m.GC(t.Context(), []string{"keep1"}); err != nil || len(again) != 0 {
		t.Errorf("second GC = %v, %v; want nothing to do", again, err)
	}
}

func TestConfigSelection(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "20-b.conflist", `{"cniVersion":"1.0.0","name":"b","plugins":[{"type":"fakebridge"}]}`)
	e.writeConf(t, "10-a.conf", `{"cniVersion":"0.4.0","name":"a","type":"fakebridge","ip":"10.99.0.7/16"}`)
	e.writeConf(t, "05-broken.conflist", `{"cniVersion":`)
	e.writeConf(t, "06-noplugins.conflist", `{"cniVersion":"1.0.0","name":"empty","plugins":[]}`)
	e.writeConf(t, "00-readme.txt", `not a config`)

	res, err := e.m.Attach(t.Context(), podArgs(e.netns))
	if err != nil {
		t.Fatal(err)
	}
	if res.Network != "a" || len(res.IPs) != 1 || res.IPs[0].Address.String() != "10.99.0.7/16" {
		t.Fatalf("Attach used the wrong config or decoded a 0.4.0 result wrongly: %+v", res)
	}
	calls := e.calls(t)
	var conf struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
	}
	if err := json.Unmarshal(calls[1].Stdin, &conf); err != nil || conf.Name != "a" || conf.CNIVersion != "0.4.0" {
		t.Fatalf("bridge got %s", calls[1].Stdin)
	}
}

func TestReady(t *testing.T) {
	e := newEnv(t)
	ready := func() (bool, string) { return e.m.Ready(t.Context()) }

	if ok, msg := ready(); ok || !strings.Contains(msg, "no cni config in "+e.confDir) {
		t.Fatalf("empty dir: Ready = %v %q", ok, msg)
	}
	e.writeConf(t, "10-broken.conflist", `{"name": 3}`)
	if ok, msg := ready(); ok || !strings.Contains(msg, "10-broken.conflist") {
		t.Fatalf("broken config: Ready = %v %q, want the file named", ok, msg)
	}
	e.writeConf(t, "20-test.conflist", strings.Replace(twoPlugins, `"fakeportmap"`, `"nosuchplugin"`, 1))
	if ok, msg := ready(); ok || !strings.Contains(msg, `"nosuchplugin" not found`) {
		t.Fatalf("missing plugin: Ready = %v %q", ok, msg)
	}
	// The fake plugins speak up to 1.0.0, as Debian's 1.1.1 plugins do.
	e.writeConf(t, "20-test.conflist", strings.Replace(twoPlugins, `"1.0.0"`, `"1.1.0"`, 1))
	if ok, msg := ready(); ok || !strings.Contains(msg, `does not support config version "1.1.0"`) {
		t.Fatalf("too new cniVersion: Ready = %v %q", ok, msg)
	}
	e.writeConf(t, "20-test.conflist", twoPlugins)
	e.calls(t)
	if ok, msg := ready(); !ok || msg != "" {
		t.Fatalf("good config: Ready = %v %q", ok, msg)
	}
	// A second call with nothing changed execs no plugin.
	if ok, _ := ready(); !ok {
		t.Fatal("second Ready not ready")
	}
	if calls := e.calls(t); len(calls) != 0 {
		t.Fatalf("cached Ready ran plugins: %s", sequence(calls))
	}
	if err := os.Remove(filepath.Join(fakeBin, "fakeportmap")); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := os.Link(filepath.Join(fakeBin, "fakebridge"), filepath.Join(fakeBin, "fakeportmap")); err != nil {
			t.Fatal(err)
		}
	}()
	if ok, msg := ready(); ok || !strings.Contains(msg, `"fakeportmap" not found`) {
		t.Fatalf("plugin removed after a good check: Ready = %v %q", ok, msg)
	}
}

func TestConfigValidate(t *testing.T) {
	var c Config
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Errorf("zero config after Validate = %+v, want the defaults", c)
	}
	c = Config{CacheDir: "/srv/cni"}
	if err := c.Validate(); err != nil || c.IntentDir != "/srv/cni/intents" {
		t.Errorf("intent dir with cache dir /srv/cni: %q, %v", c.IntentDir, err)
	}
	for _, bad := range []Config{
		{ConfDir: "net.d"},
		{BinDirs: []string{"/opt/cni/bin", "bin"}},
		{IfName: "a-very-long-interface-name"},
		{IntentDir: "intents"},
	} {
		if err := bad.Validate(); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Validate(%+v) = %v, want InvalidArgument", bad, err)
		}
	}
}

func assertCacheEmpty(t *testing.T, e *env) {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(e.m.Config().CacheDir, "results"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, ent := range ents {
		t.Errorf("cache entry left: %s", ent.Name())
	}
}

// BenchmarkLoadNetwork is the cost of reading the config dir on every
// Attach instead of watching it.
func BenchmarkLoadNetwork(b *testing.B) {
	dir := b.TempDir()
	m, err := New(Config{ConfDir: dir, BinDirs: []string{fakeBin}, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		b.Fatal(err)
	}
	out, err := exec.Command("bash", "../hack/cni-conf.sh", dir).CombinedOutput()
	if err != nil {
		b.Fatalf("hack/cni-conf.sh: %v\n%s", err, out)
	}
	for b.Loop() {
		if _, err := m.loadNetwork(); err != nil {
			b.Fatal(err)
		}
	}
}

// With LoopbackUp the caller has brought lo up: Attach runs only the
// network's own plugins.
func TestAttachSkipsLoopbackWhenUp(t *testing.T) {
	e := newEnv(t)
	cfg := e.m.Config()
	cfg.LoopbackUp = true
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.writeConf(t, "10-test.conflist", twoPlugins)
	if _, err := m.Attach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	if got, want := sequence(e.calls(t)), "ADD fakebridge eth0, ADD fakeportmap eth0"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
	// Nor does Detach: no ADD left a loopback cache entry to drop.
	if err := m.Detach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	if got, want := sequence(e.calls(t)), "DEL fakeportmap eth0, DEL fakebridge eth0"; got != want {
		t.Fatalf("calls: %s, want %s", got, want)
	}
}
