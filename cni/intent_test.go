package cni

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// attachHelperEnv makes the test binary a berthd stand-in that runs one
// Attach (its Config and PodArgs in the variable, as JSON) and is killed
// in the middle of it.
const attachHelperEnv = "BERTH_CNI_ATTACH_HELPER"

type helperInput struct {
	Config Config
	Args   PodArgs
}

func attachHelper() int {
	var in helperInput
	if err := json.Unmarshal([]byte(os.Getenv(attachHelperEnv)), &in); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	m, err := New(in.Config)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if _, err := m.Attach(context.Background(), in.Args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// killedDuringAdd runs an Attach of args in another process whose fake
// portmap hangs in its ADD, and SIGKILLs that process there: berthd dying
// in the middle of a pod's CNI ADD.
func killedDuringAdd(t *testing.T, e *env, args PodArgs) {
	t.Helper()
	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"type": "fakeportmap"`, `"type": "fakeportmap", "hangAdd": true`, 1))
	in, _ := json.Marshal(helperInput{Config: e.m.Config(), Args: args})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), attachHelperEnv+"="+string(in))
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	hang := e.record + ".hang"
	deadline := time.Now().Add(30 * time.Second)
	for !fileExists(hang) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the plugin never hung; helper said %s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	os.Remove(hang)
	// The node's config is fine again after the restart.
	e.writeConf(t, "10-test.conflist", twoPlugins)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestGCReleasesPodKilledDuringAdd: berthd dies while the second plugin
// of the chain runs its ADD. libcni cached nothing, so before intents GC
// could not see the pod and the bridge's lease leaked. Now GC runs the
// DELs with the bridge's result as prevResult, and the intent goes.
func TestGCReleasesPodKilledDuringAdd(t *testing.T) {
	e := newEnv(t)
	killedDuringAdd(t, e, podArgs(e.netns))
	if got := sequence(e.calls(t)); got != "ADD loopback lo, ADD fakebridge eth0, ADD fakeportmap eth0" {
		t.Fatalf("calls before the kill: %s", got)
	}
	// Only lo's ADD completed, so only lo is cached.
	if atts, err := e.m.cni.GetCachedAttachments("c0ffee"); err != nil || len(atts) != 1 || atts[0].Network != "cni-loopback" {
		t.Fatalf("cached attachments: %+v, %v", atts, err)
	}
	if !fileExists(e.m.intentPath("c0ffee")) {
		t.Fatal("no intent recorded for the interrupted ADD")
	}

	// The restarted berthd knows no pod.
	done, err := e.m.GC(t.Context(), nil)
	if err != nil || len(done) != 1 || done[0] != "c0ffee" {
		t.Fatalf("GC = %v, %v; want c0ffee released", done, err)
	}
	calls := e.calls(t)
	if got, want := sequence(calls), "DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo"; got != want {
		t.Fatalf("GC calls: %s\nwant %s", got, want)
	}
	for _, c := range calls[:2] {
		var stdin struct {
			PrevResult struct {
				IPs []struct{ Address string } `json:"ips"`
			} `json:"prevResult"`
			RuntimeConfig struct {
				PortMappings []PortMapping `json:"portMappings"`
			} `json:"runtimeConfig"`
		}
		if err := json.Unmarshal(c.Stdin, &stdin); err != nil || len(stdin.PrevResult.IPs) != 3 || stdin.PrevResult.IPs[2].Address != "10.99.0.5/16" {
			t.Errorf("%s stdin %s: want the bridge's result as prevResult (%v)", c, c.Stdin, err)
		}
		if c.Plugin == "fakeportmap" && len(stdin.RuntimeConfig.PortMappings) != 2 {
			t.Errorf("portmap DEL without the pod's mappings: %s", c.Stdin)
		}
		if !strings.Contains(c.Args, "K8S_POD_NAME=web") || c.NetNS != e.netns {
			t.Errorf("%s: args %q netns %q, want the pod's", c, c.Args, c.NetNS)
		}
	}
	if fileExists(e.m.intentPath("c0ffee")) {
		t.Error("intent left after GC released the pod")
	}
	assertCacheEmpty(t, e)
	if again, err := e.m.GC(t.Context(), nil); err != nil || len(again) != 0 {
		t.Errorf("second GC = %v, %v", again, err)
	}
}

// TestGCKeepsAcknowledgedIntent: a pod the runtime acknowledged keeps its
// intent and network; its own Detach later releases both.
func TestGCKeepsAcknowledgedIntent(t *testing.T) {
	e := newEnv(t)
	killedDuringAdd(t, e, podArgs(e.netns))
	e.calls(t)
	if done, err := e.m.GC(t.Context(), []string{"c0ffee"}); err != nil || len(done) != 0 {
		t.Fatalf("GC = %v, %v; want nothing released", done, err)
	}
	if calls := e.calls(t); len(calls) != 0 {
		t.Fatalf("GC ran %s", sequence(calls))
	}
	// The pod's Detach (no cache entry) DELs with the intent's config.
	if err := e.m.Detach(t.Context(), podArgs(e.netns)); err != nil {
		t.Fatal(err)
	}
	if got := sequence(e.calls(t)); got != "DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo" {
		t.Errorf("Detach calls: %s", got)
	}
	if fileExists(e.m.intentPath("c0ffee")) {
		t.Error("intent left after Detach")
	}
}

// TestReleaseOnlyKnownPods: Release acts on a pod with an intent and on
// none other.
func TestReleaseOnlyKnownPods(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	if ok, err := e.m.Release(t.Context(), "unknown", e.netns); ok || err != nil {
		t.Fatalf("Release of an unknown pod = %v, %v", ok, err)
	}
	if calls := e.calls(t); len(calls) != 0 {
		t.Fatalf("Release of an unknown pod ran %s", sequence(calls))
	}
	killedDuringAdd(t, e, podArgs(e.netns))
	e.calls(t)
	ok, err := e.m.Release(t.Context(), "c0ffee", e.netns)
	if !ok || err != nil {
		t.Fatalf("Release = %v, %v", ok, err)
	}
	if got := sequence(e.calls(t)); got != "DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo" {
		t.Errorf("Release calls: %s", got)
	}
}

// TestIntentLifecycle: an intent exists from before the first plugin
// until a Detach succeeds; a failed Attach whose DELs all worked leaves
// none, one whose DEL failed keeps it for GC.
func TestIntentLifecycle(t *testing.T) {
	e := newEnv(t)
	e.writeConf(t, "10-test.conflist", twoPlugins)
	args := podArgs(e.netns)
	path := e.m.intentPath(args.ID)
	if _, err := e.m.Attach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no intent after Attach: %v", err)
	}
	var it intent
	if err := json.Unmarshal(b, &it); err != nil || it.Args.PodName != "web" || !strings.Contains(string(it.Network), `"testnet"`) || len(it.Result) == 0 {
		t.Errorf("intent = %s (%v)", b, err)
	}
	if err := e.m.Detach(t.Context(), args); err != nil {
		t.Fatal(err)
	}
	if fileExists(path) {
		t.Error("intent left after Detach")
	}

	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"type": "fakeportmap"`, `"type": "fakeportmap", "failAdd": true`, 1))
	if _, err := e.m.Attach(t.Context(), args); err == nil {
		t.Fatal("Attach with a failing plugin succeeded")
	}
	if fileExists(path) {
		t.Error("intent left after a failed Attach that was rolled back")
	}

	e.writeConf(t, "10-test.conflist", strings.Replace(twoPlugins, `"type": "fakeportmap"`, `"type": "fakeportmap", "failAdd": true, "failDel": true`, 1))
	if _, err := e.m.Attach(t.Context(), args); err == nil {
		t.Fatal("Attach with a failing plugin succeeded")
	}
	if !fileExists(path) {
		t.Error("no intent after a rollback whose DEL failed")
	}
	// GC retries with the config the ADD ran with (whose DEL still fails
	// here) and keeps the intent for the next start.
	e.calls(t)
	if done, err := e.m.GC(t.Context(), nil); err == nil || len(done) != 0 || !fileExists(path) {
		t.Errorf("GC = %v, %v, intent kept: %v; want the DEL's error and the intent kept", done, err, fileExists(path))
	}
	if got := sequence(e.calls(t)); got != "DEL fakeportmap eth0, DEL fakebridge eth0, DEL loopback lo" {
		t.Errorf("GC calls: %s", got)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("intent dir: %v, want the one intent", ents)
	}
}
