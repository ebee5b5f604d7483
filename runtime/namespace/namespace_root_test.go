package namespace_test

import (
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
	"github.com/berth-dev/berth/runtime/namespace"
)

func needRoot(t *testing.T) {
	testutil.RequireRoot(t, "creates and bind-mounts namespaces")
}

func threadNS(kind string) string {
	goruntime.LockOSThread()
	defer goruntime.UnlockOSThread()
	s, _ := os.Readlink("/proc/thread-self/ns/" + kind)
	return s
}

func mounted(path string) bool {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

func TestPinDoUnpin(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	paths := map[namespace.Kind]string{}
	for _, k := range []namespace.Kind{namespace.Net, namespace.IPC, namespace.UTS} {
		paths[k] = filepath.Join(dir, string(k))
	}
	hostNet, hostUTS := threadNS("net"), threadNS("uts")
	mainNet, _ := os.Readlink("/proc/self/ns/net")
	var inside string
	err := namespace.Pin(namespace.PinOptions{
		Paths:    paths,
		Hostname: "pinned-host",
		Sysctls:  map[string]string{"net.ipv4.ip_unprivileged_port_start": "77", "kernel.shmmni": "999"},
		Then: func() error {
			inside, _ = os.Readlink("/proc/thread-self/ns/net")
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, p := range paths {
			if err := namespace.Unpin(p); err != nil {
				t.Error(err)
			}
			if mounted(p) {
				t.Errorf("%s still mounted", p)
			}
			if _, err := os.Lstat(p); err == nil {
				t.Errorf("%s still exists", p)
			}
		}
	}()
	for k, p := range paths {
		if !mounted(p) || !namespace.Pinned(p) {
			t.Errorf("%s namespace not pinned on %s", k, p)
		}
	}
	if namespace.Pinned(dir) {
		t.Errorf("a plain directory counts as pinned")
	}
	if inside == hostNet || inside == "" {
		t.Errorf("Then ran in namespace %q, host's is %q", inside, hostNet)
	}
	// The pinned namespaces are the new ones, with the settings.
	err = namespace.Do(paths[namespace.Net], func() error {
		if got, _ := os.Readlink("/proc/thread-self/ns/net"); got != inside {
			t.Errorf("Do joined %s, pinned %s", got, inside)
		}
		b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
		if strings.TrimSpace(string(b)) != "77" {
			t.Errorf("net sysctl inside = %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = namespace.Do(paths[namespace.UTS], func() error {
		var u unix.Utsname
		_ = unix.Uname(&u)
		if got := unix.ByteSliceToString(u.Nodename[:]); got != "pinned-host" {
			t.Errorf("hostname inside = %q", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = namespace.Do(paths[namespace.IPC], func() error {
		b, _ := os.ReadFile("/proc/sys/kernel/shmmni")
		if strings.TrimSpace(string(b)) != "999" {
			t.Errorf("ipc sysctl inside = %q", b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Many rounds: whichever threads were lent, including the main one,
	// came back.
	for range 20 {
		_ = namespace.Do(paths[namespace.Net], func() error { return nil })
	}
	if got := threadNS("net"); got != hostNet {
		t.Errorf("a thread stayed in the pod's netns: %s", got)
	}
	if got := threadNS("uts"); got != hostUTS {
		t.Errorf("a thread stayed in the pod's uts ns: %s", got)
	}
	if got, _ := os.Readlink("/proc/self/ns/net"); got != mainNet {
		t.Errorf("main thread moved to %s", got)
	}
	if b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(string(b)) == "77" {
		t.Error("the sysctl leaked to the host")
	}
}

func TestDoMissing(t *testing.T) {
	needRoot(t)
	if err := namespace.Do(filepath.Join(t.TempDir(), "none"), func() error { return nil }); err == nil {
		t.Error("Do on a missing path succeeded")
	}
}
