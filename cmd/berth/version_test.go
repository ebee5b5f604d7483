package main

import (
	"regexp"
	"strings"
	"testing"
)

func TestVersionInfo(t *testing.T) {
	h := newHarness(t)
	out := h.ok("version")
	for _, re := range []string{`(?m)^Client: Berth$`, `(?m)^ Version: +dev$`, `(?m)^ Context: +default$`,
		`(?m)^Server: Berth$`, `(?m)^  Version: +9\.9\.9$`, `(?m)^  API version: +1\.57 \(minimum version 1\.40\)$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("version lacks %s:\n%s", re, out)
		}
	}
	if out := h.ok("version", "--format", "{{.Server.Version}} {{.Server.APIVersion}} {{.Client.Platform.Name}}"); out != "9.9.9 1.57 Berth\n" {
		t.Errorf("version --format = %q", out)
	}
	if out := h.ok("--version"); out != "Berth version dev, build unknown\n" {
		t.Errorf("--version = %q", out)
	}
	if out := h.ok("info", "--format", "{{.DockerRootDir}} {{.Images}} {{.ClientInfo.Platform.Name}}"); out != "/var/lib/berth-test 0 Berth\n" {
		t.Errorf("info --format = %q", out)
	}
	out = h.ok("info")
	for _, re := range []string{`(?m)^Client: Berth$`, `(?m)^ Server Version: 9\.9\.9$`, `(?m)^ Storage Driver: overlayfs$`, `(?m)^ Docker Root Dir: /var/lib/berth-test$`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("info lacks %s:\n%s", re, out)
		}
	}
	// Without a daemon, version still prints the client, then fails.
	r := h.fails(1, "-H", "unix:///nonexistent/berth.sock", "version")
	if !strings.HasPrefix(r.stdout, "Client: Berth\n") || !strings.HasPrefix(r.stderr, "failed to connect to the docker API at unix:///nonexistent/berth.sock") {
		t.Errorf("version without a daemon:\n%s%s", r.stdout, r.stderr)
	}
}

// TestHelp: berth's help is docker's, under berth's name, without what
// berth cannot run.
func TestHelp(t *testing.T) {
	h := newHarness(t)
	out := h.ok("--help")
	for _, want := range []string{"Usage:  berth [OPTIONS] COMMAND\n", "\n  compose     Docker Compose\n", "\n  run         Create and run a new container from an image\n",
		"$BERTH_HOST or unix:///run/berth/docker.sock", "Run 'berth COMMAND --help' for more information on a command."} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\n  bake ") {
		t.Errorf("help lists bake, which needs buildx:\n%s", out)
	}
	out = h.ok("build", "--help")
	if !strings.Contains(out, "Usage:  berth build [OPTIONS] PATH | -\n") || !strings.Contains(out, "berth image build, berth build, berth builder build") {
		t.Errorf("build --help:\n%s", out)
	}
	if r := h.fails(1, "bake"); !strings.Contains(r.stderr, "berth build") {
		t.Errorf("bake: %q", r.stderr)
	}
	if r := h.fails(1, "nosuch"); r.stderr != "berth: unknown command: berth nosuch\n\nRun 'berth --help' for more information\n" {
		t.Errorf("unknown command: %q", r.stderr)
	}
}
