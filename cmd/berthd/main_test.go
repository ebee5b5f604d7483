package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("root = \"/srv/from-file\"\nstate = \"/run/from-file\"\n[images]\nregistry_config_dir = \"/etc/containerd/certs.d\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.toml")

	cfg, err := loadConfig([]string{"--state", "/run/from-flag"}, file, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Root != "/srv/from-file" || cfg.State != "/run/from-flag" || cfg.Images.RegistryConfigDir != "/etc/containerd/certs.d" || cfg.Logger == nil {
		t.Errorf("file then flags = %+v", cfg)
	}

	// The default file may be absent; the defaults apply.
	cfg, err = loadConfig(nil, missing, io.Discard, io.Discard)
	if err != nil || cfg.Root != "/var/lib/berth" || cfg.CRISocket() != "/run/berth/berth.sock" {
		t.Errorf("no default file = %+v, %v", cfg, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", missing}, "missing.toml"},
		{[]string{"--root", "relative"}, `root "relative" is not an absolute path`},
		{[]string{"--log-level", "loud"}, "log level"},
		{[]string{"--log-format", "xml"}, "--log-format"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, err := loadConfig(tc.args, missing, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadConfig(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}

	// The pod flags override the file's [runtime] and [cni] sections.
	withCNI := filepath.Join(dir, "cni.toml")
	if err := os.WriteFile(withCNI, []byte("stream_port = \"10010\"\n[cni]\nconf_dir = \"/etc/from-file\"\nbin_dirs = [\"/from-file\"]\n[runtime]\nshim_binary = \"/usr/bin/from-file\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = loadConfig([]string{"--cni-bin-dir", "/a:/b", "--shim-binary", "/opt/berth-shim"}, withCNI, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CNI.ConfDir != "/etc/from-file" || strings.Join(cfg.CNI.BinDirs, ":") != "/a:/b" || cfg.Runtime.ShimBinary != "/opt/berth-shim" || cfg.StreamPort != "10010" {
		t.Errorf("pod flags over file = cni %+v runtime %+v port %q", cfg.CNI, cfg.Runtime, cfg.StreamPort)
	}
	// --nri-socket moves NRI's socket over the file's.
	withNRI := filepath.Join(dir, "nri.toml")
	if err := os.WriteFile(withNRI, []byte("[nri]\nsocket_path = \"/run/from-file/nri.sock\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if cfg, err = loadConfig([]string{"--nri-socket", "/tmp/critest/nri.sock"}, withNRI, io.Discard, io.Discard); err != nil || cfg.NRI.SocketPath != "/tmp/critest/nri.sock" {
		t.Errorf("--nri-socket over the file: %+v, %v", cfg.NRI, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--cni-conf-dir", "rel"}, `"rel"`},
		{[]string{"--shim-binary", "berth-shim"}, `"berth-shim"`},
		{[]string{"--nri-socket", "nri.sock"}, `"nri.sock"`},
	} {
		if _, err := loadConfig(tc.args, missing, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("loadConfig(%q) = %v, want an error with %q", tc.args, err, tc.want)
		}
	}

	var out bytes.Buffer
	cfg, err = loadConfig([]string{"--version"}, missing, &out, io.Discard)
	if cfg != nil || err != nil || !strings.HasPrefix(out.String(), "berthd 0.1.0") {
		t.Errorf("--version = %v, %v, %q", cfg, err, out.String())
	}
}

func TestCloseInheritedOnExec(t *testing.T) {
	// An inherited descriptor: no close-on-exec, as a launcher leaves it.
	fd, err := unix.Open("/dev/null", unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	cloexec := func() bool {
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err != nil {
			t.Fatal(err)
		}
		return flags&unix.FD_CLOEXEC != 0
	}
	if cloexec() {
		t.Fatal("test set-up: the descriptor is already close-on-exec")
	}
	closeInheritedOnExec()
	if !cloexec() {
		t.Error("an inherited descriptor would pass into the shims")
	}
	// stdin, stdout and stderr are the daemon's own and stay.
	if flags, _ := unix.FcntlInt(0, unix.F_GETFD, 0); flags&unix.FD_CLOEXEC != 0 {
		t.Error("stdin made close-on-exec")
	}
}
