package shim

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// TestKillStray: the berth-shim a state directory's pid file names is
// killed (and gone when KillStray returns); a process of another name
// under that pid is left alone, as are a missing or garbled pid file.
func TestKillStray(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	fake := filepath.Join(bin, "berth-shim")
	if err := os.WriteFile(fake, b, 0o755); err != nil {
		t.Fatal(err)
	}
	start := func(path string) *exec.Cmd {
		cmd := exec.Command(path, "60")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	dir := t.TempDir()
	pidFile := filepath.Join(dir, wire.PidName)
	if err := KillStray(t.Context(), dir); err != nil {
		t.Errorf("no pid file: %v", err)
	}
	os.WriteFile(pidFile, []byte("garbage"), 0o644)
	if err := KillStray(t.Context(), dir); err != nil {
		t.Errorf("garbled pid file: %v", err)
	}

	other := start(sleep)
	os.WriteFile(pidFile, []byte(strconv.Itoa(other.Process.Pid)), 0o644)
	if err := KillStray(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	if !alive(other.Process.Pid) {
		t.Error("killed a process that is no berth-shim")
	}

	stray := start(fake)
	// Our child: reap it as init would for a re-parented shim.
	exited := make(chan struct{})
	go func() { stray.Wait(); close(exited) }()
	deadline := time.Now().Add(5 * time.Second)
	for !isShim(stray.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	os.WriteFile(pidFile, []byte(strconv.Itoa(stray.Process.Pid)+"\n"), 0o644)
	if err := KillStray(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the stray shim still runs")
	}
}

func alive(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return err == nil && !isZombie(pid)
}

func isZombie(pid int) bool {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == ')' {
			return i+2 < len(b) && b[i+2] == 'Z'
		}
	}
	return false
}

// TestGiveRecordsPid: once a shim has its job, its pid file names it, even
// while the shim has not written the file itself (here: never), so that
// KillStray finds the shim of a berthd that died just after give.
func TestGiveRecordsPid(t *testing.T) {
	// A shim that reads its job and idles without a word: a process named
	// berth-shim (a script's name is its command name).
	fake := filepath.Join(t.TempDir(), "berth-shim")
	if err := os.WriteFile(fake, []byte("#!/bin/sh\ncat <&4 >/dev/null\nwhile :; do sleep 1; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := spawn(fake)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); <-p.exited })
	o := StartOptions{Binary: fake, ID: "c1", Bundle: t.TempDir(), StateDir: filepath.Join(t.TempDir(), "c1")}
	if err := o.prepare(); err != nil {
		t.Fatal(err)
	}
	if err := p.give(o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(o.StateDir, wire.PidName))
	if err != nil || string(b) != strconv.Itoa(p.cmd.Process.Pid) {
		t.Fatalf("pid file after give: %q, %v; want %d", b, err, p.cmd.Process.Pid)
	}
	// berthd died here: the next Open's KillStray ends the shim.
	deadline := time.Now().Add(5 * time.Second)
	for !isShim(p.cmd.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := KillStray(t.Context(), o.StateDir); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		t.Fatal("the shim given its job still runs")
	}
}
