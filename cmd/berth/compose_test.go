package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
)

// TestCompose: compose v5 is built in (no plugin anywhere: PATH and the
// config dir are empty of them) and talks to berth's daemon.
func TestCompose(t *testing.T) {
	h := newHarness(t)
	img := dockerapitest.Image("web")
	h.store.Remote["127.0.0.1:5000/berth/web:v1"] = img
	dir := t.TempDir()
	file := filepath.Join(dir, "compose.yaml")
	writeFile(t, file, `
name: shop
services:
  web:
    image: 127.0.0.1:5000/berth/web:v1
    environment:
      GREETING: ${GREETING:-hello}
    ports: ["8080:80"]
`)

	if out := h.ok("compose", "version"); !regexp.MustCompile(`^Docker Compose version \S+\n$`).MatchString(out) {
		t.Errorf("compose version = %q", out)
	}
	out := h.ok("compose", "-f", file, "config")
	for _, want := range []string{"name: shop\n", "    image: 127.0.0.1:5000/berth/web:v1\n", "      GREETING: hello\n", "        published: \"8080\"\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("compose config lacks %q:\n%s", want, out)
		}
	}
	if out := h.ok("compose", "-f", file, "config", "--services"); out != "web\n" {
		t.Errorf("compose config --services = %q", out)
	}

	// compose pulls through berthd.
	r := h.run("", "compose", "-f", file, "pull")
	if r.code != 0 || !strings.Contains(r.stderr, "Image 127.0.0.1:5000/berth/web:v1 Pulled") {
		t.Errorf("compose pull: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if out := h.ok("images", "--format", "{{.Repository}}:{{.Tag}}"); out != "127.0.0.1:5000/berth/web:v1\n" {
		t.Errorf("images after compose pull = %q", out)
	}

	// An invalid compose file: compose's own error, before any request.
	bad := filepath.Join(dir, "bad.yaml")
	writeFile(t, bad, "services:\n  web:\n    image: x\n    ports: 80\n")
	r = h.run("", "compose", "-f", bad, "config")
	if r.code != 1 || !strings.Contains(r.stderr, "services.web.ports must be a array") {
		t.Errorf("invalid compose file: exit %d, %q", r.code, r.stderr)
	}
	if r := h.run("", "compose", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, `unknown docker command: "compose nosuch"`) {
		t.Errorf("unknown compose command: exit %d, %q", r.code, r.stderr)
	}
	if r := h.run("", "compose", "up", "--nosuchflag"); r.code != 1 || !strings.HasPrefix(r.stderr, "unknown flag: --nosuchflag") {
		t.Errorf("compose flag error: exit %d, %q", r.code, r.stderr)
	}
}
