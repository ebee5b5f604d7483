package main

import (
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/console"
	"github.com/opencontainers/go-digest"

	"github.com/berth-dev/berth/dockerapi/dockerapitest"
	"github.com/berth-dev/berth/imagestore"
)

// TestImageVerbs drives docker's image verbs against berthd's handler and
// checks what a user sees: docker's output, tables and exit codes.
func TestImageVerbs(t *testing.T) {
	h := newHarness(t)
	img := dockerapitest.Image("bb")
	layer := img.Layers[0].Digest.Encoded()[:12]
	h.store.Remote["127.0.0.1:5000/berth/busybox:latest"] = img

	// Piped, a pull prints one line per step, no progress bars.
	out := h.ok("pull", "127.0.0.1:5000/berth/busybox")
	want := "Using default tag: latest\n" +
		"latest: Pulling from berth/busybox\n" +
		layer + ": Pulling fs layer\n" +
		layer + ": Pull complete\n" +
		"Digest: " + img.ManifestDigest.String() + "\n" +
		"Status: Downloaded newer image for 127.0.0.1:5000/berth/busybox:latest\n" +
		"127.0.0.1:5000/berth/busybox:latest\n"
	if out != want {
		t.Errorf("pull output:\n%s\nwant:\n%s", out, want)
	}
	if out := h.ok("pull", "-q", "127.0.0.1:5000/berth/busybox"); out != "127.0.0.1:5000/berth/busybox:latest\n" {
		t.Errorf("pull -q output %q", out)
	}

	h.ok("tag", "127.0.0.1:5000/berth/busybox", "mybox:v1")
	short := img.ID.Encoded()[:12]
	// docker 29's default listing: one line per tag, sorted.
	out = h.ok("images")
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^IMAGE +ID +DISK USAGE +CONTENT SIZE +EXTRA$`).MatchString(strings.TrimSpace(lines[0])) ||
		!regexp.MustCompile(`^127\.0\.0\.1:5000/berth/busybox:latest +`+short+` +2\.2MB`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^mybox:v1 +`+short+` +2\.2MB`).MatchString(lines[2]) {
		t.Errorf("images:\n%s", out)
	}
	// Content size: what the store holds (manifest, config, compressed
	// layers), from the manifests docker 29 asks for.
	if !regexp.MustCompile(`2\.2MB +1kB`).MatchString(lines[2]) {
		t.Errorf("images: content size:\n%s", out)
	}
	out = h.ok("history", "mybox:v1")
	if !regexp.MustCompile(`^IMAGE +CREATED +CREATED BY +SIZE +COMMENT\n` + short + ` +\d+ \w+ ago +2\.2MB +\n$`).MatchString(out) {
		t.Errorf("history:\n%q", out)
	}
	if out := h.ok("image", "history", "--no-trunc", "--format", "{{.ID}} {{.Size}}", "mybox:v1"); out != img.ID.String()+" 2.2MB\n" {
		t.Errorf("image history --format = %q", out)
	}
	// The classic table, as --digests (or --format table) asks.
	out = h.ok("images", "--digests")
	lines = strings.Split(strings.TrimRight(out, "\n"), "\n")
	if len(lines) != 3 || !regexp.MustCompile(`^REPOSITORY +TAG +DIGEST +IMAGE ID +CREATED +SIZE$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`(?m)^mybox +v1 +<none> +`+short+` +\d+ \w+ ago +2\.2MB$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^127\.0\.0\.1:5000/berth/busybox +latest +<none> +`+short+` +\d+ \w+ ago +2\.2MB$`).MatchString(out) {
		t.Errorf("images --digests:\n%s", out)
	}
	// As docker's: one line per tag.
	if out := h.ok("images", "-q"); out != short+"\n"+short+"\n" {
		t.Errorf("images -q = %q", out)
	}
	if out := h.ok("image", "ls", "--format", "{{.Repository}}:{{.Tag}}", "mybox"); out != "mybox:v1\n" {
		t.Errorf("image ls --format with a reference = %q", out)
	}
	out = h.ok("images", "--format", "json", "--no-trunc", "mybox")
	var row map[string]string
	if err := json.Unmarshal([]byte(out), &row); err != nil || row["ID"] != img.ID.String() || row["Tag"] != "v1" ||
		row["Size"] != "2.2MB" || row["CreatedAt"] != "2026-01-02 03:04:05 +0000 UTC" || row["Containers"] != "N/A" {
		t.Errorf("images --format json = %q (%v)", out, err)
	}

	out = h.ok("image", "inspect", "mybox:v1")
	var insp []map[string]any
	if err := json.Unmarshal([]byte(out), &insp); err != nil || len(insp) != 1 || insp[0]["Id"] != img.ID.String() {
		t.Fatalf("image inspect = %s (%v)", out, err)
	}
	if !strings.HasPrefix(out, "[\n    {\n") {
		t.Errorf("inspect is not indented like docker's: %q", out[:20])
	}
	if out := h.ok("inspect", "--format", `{{.Id}} {{.Os}} {{json .RootFS.Layers}} {{join .RepoTags ","}}`, "mybox:v1"); out !=
		img.ID.String()+` linux ["`+img.Config.RootFS.DiffIDs[0].String()+`"] 127.0.0.1:5000/berth/busybox:latest,mybox:v1`+"\n" {
		t.Errorf("inspect --format = %q", out)
	}
	// One missing object: the found one is printed, the missing one named.
	r := h.fails(1, "inspect", "mybox:v1", "nosuch")
	if r.stderr != "error: no such object: nosuch\n" {
		t.Errorf("inspect of a missing image: stderr %q", r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &insp); err != nil || len(insp) != 1 {
		t.Errorf("inspect with one missing still prints the found one: %q", r.stdout)
	}

	tarPath := filepath.Join(t.TempDir(), "img.tar")
	h.ok("save", "-o", tarPath, "mybox:v1")
	if b, err := os.ReadFile(tarPath); err != nil || string(b) != "TAR:mybox:v1" {
		t.Errorf("saved file %q (%v)", b, err)
	}
	if out := h.ok("save", "mybox:v1"); out != "TAR:mybox:v1" {
		t.Errorf("save to piped stdout = %q", out)
	}
	if out := h.ok("load", "-i", tarPath); !strings.HasSuffix(out, "Loaded image: mybox:v1\n") {
		t.Errorf("load -i = %q", out)
	}
	if r := h.run("TAR:other:1", "load", "-q"); r.code != 0 || r.stdout != "Loaded image: other:1\n" {
		t.Errorf("load from stdin = %q, exit %d, stderr %q", r.stdout, r.code, r.stderr)
	}

	out = h.ok("push", "127.0.0.1:5000/berth/busybox")
	if want := "Using default tag: latest\nThe push refers to repository [127.0.0.1:5000/berth/busybox]\naaaaaaaaaaaa: Pushed\n" +
		"latest: digest: " + img.ManifestDigest.String() + " size: 527\n"; out != want {
		t.Errorf("push output:\n%s\nwant:\n%s", out, want)
	}
	if len(h.store.Pushed) != 1 || h.store.Pushed[0] != "127.0.0.1:5000/berth/busybox:latest" {
		t.Errorf("pushed %v", h.store.Pushed)
	}

	r = h.fails(1, "rmi", short)
	if r.stderr != "Error response from daemon: remove "+short+": image is referenced in multiple repositories: conflict\n" {
		t.Errorf("rmi by ID of a multi-tag image: %q", r.stderr)
	}
	if out := h.ok("rmi", "mybox:v1"); out != "Untagged: mybox:v1\n" {
		t.Errorf("rmi tag = %q", out)
	}
	if out := h.ok("rmi", "-f", "127.0.0.1:5000/berth/busybox"); out != "Untagged: 127.0.0.1:5000/berth/busybox:latest\nDeleted: "+img.ID.String()+"\n" {
		t.Errorf("rmi last tag = %q", out)
	}
	if out := h.ok("images", "--format", "{{.Repository}}:{{.Tag}}"); out != "other:1\n" {
		t.Errorf("images after rmi = %q", out)
	}

	// Errors: one line on stderr, exit 1.
	r = h.fails(1, "pull", "127.0.0.1:5000/berth/nosuch")
	if r.stderr != "Error response from daemon: pull 127.0.0.1:5000/berth/nosuch:latest: not found\n" {
		t.Errorf("pull of a missing image: stderr %q", r.stderr)
	}
	r = h.fails(1, "pull", "Busybox")
	if r.stderr != "invalid reference format: repository name (library/Busybox) must be lowercase\n" {
		t.Errorf("pull of an invalid reference: stderr %q", r.stderr)
	}
	// A usage error is docker's: the usage line and exit status 125.
	r = h.fails(125, "pull", "--nosuchflag", "x")
	if !strings.HasPrefix(r.stderr, "unknown flag: --nosuchflag\n\nUsage:  berth pull [OPTIONS] NAME[:TAG|@DIGEST]") {
		t.Errorf("unknown flag: %q", r.stderr)
	}
}

// TestImageFormats checks docker's --format templates and tables on berth's
// listings, and the rows of images without tags.
func TestImageFormats(t *testing.T) {
	h := newHarness(t)
	now := time.Now()
	tagged := dockerapitest.Image("t", "busybox:latest", "127.0.0.1:5000/berth/busybox:1")
	created := now.Add(-2 * time.Hour)
	tagged.Config.Created = &created
	tagged.UnpackedSize = 4_261_000
	tagged.RepoDigests = []string{"docker.io/library/busybox@" + tagged.ManifestDigest.String()}
	h.store.Add(tagged)
	// Pulled by digest only: untagged, so listed only with -a (docker 29
	// counts it dangling), with its repository.
	byDigest := dockerapitest.Image("d")
	byDigest.RepoDigests = []string{"docker.io/library/alpine@" + byDigest.ManifestDigest.String()}
	h.store.Add(byDigest)
	// Dangling: listed only with -a, as <none>.
	dangling := dockerapitest.Image("n")
	h.store.Add(dangling)

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "--format", "{{.Repository}}:{{.Tag}}", "busybox"}, "busybox:latest\n"},
		{[]string{"images", "--format", `{{.ID}}\t{{upper .Repository}}`, "busybox"}, tagged.ID.Encoded()[:12] + "\tBUSYBOX\n"},
		{[]string{"images", "--format", `{{join (split .Repository "b") "-"}}`, "busybox"}, "-usy-ox\n"},
		{[]string{"images", "--format", `{{truncate .Repository 3}}|{{pad .Tag 1 1}}|{{lower "X"}}|{{title "ab"}}`, "busybox"}, "bus| latest |x|Ab\n"},
		{[]string{"images", "--format", "table {{.Repository}}\t{{.Size}}", "busybox"}, "REPOSITORY   SIZE\nbusybox      4.26MB\n"},
		{[]string{"images", "--format", "{{.CreatedSince}}", "busybox"}, "2 hours ago\n"},
		{[]string{"images", "-q"}, tagged.ID.Encoded()[:12] + "\n" + tagged.ID.Encoded()[:12] + "\n"},
		{[]string{"images", "-a", "--digests", "--format", "{{.Repository}} {{.Tag}} {{.Digest}}", "--filter", "label=seed=d"}, "alpine <none> " + byDigest.ManifestDigest.String() + "\n"},
		{[]string{"images", "-a", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", "--filter", "label=seed=n"}, "<none>:<none> " + dangling.ID.Encoded()[:12] + "\n"},
		{[]string{"images", "--format", "{{json .Tag}}", "127.0.0.1:5000/berth/busybox"}, "\"1\"\n"},
	} {
		if out := h.ok(tc.args...); out != tc.want {
			t.Errorf("berth %s:\n got %q\nwant %q", strings.Join(tc.args, " "), out, tc.want)
		}
	}
	// json: one object per line, docker's keys.
	out := h.ok("images", "--format", "json", "busybox")
	var row map[string]any
	if err := json.Unmarshal([]byte(out), &row); err != nil || row["Repository"] != "busybox" || row["Tag"] != "latest" || row["Size"] != "4.26MB" {
		t.Errorf("--format json = %q (%v)", out, err)
	}
	if r := h.fails(1, "images", "--format", "{{.Repository"); !strings.Contains(r.stderr, "template parsing error") {
		t.Errorf("a broken template: %q", r.stderr)
	}
}

// TestPullProgressOnTerminal: on a terminal, a pull draws docker's progress
// bars and redraws layer lines in place.
func TestPullProgressOnTerminal(t *testing.T) {
	h := newHarness(t)
	img := dockerapitest.Image("bb")
	img.Layers = append(img.Layers, imagestore.Layer{Digest: digest.FromString("second layer"), Size: 2000})
	h.store.Remote["127.0.0.1:5000/berth/busybox:latest"] = img

	pty, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatal(err)
	}
	defer pty.Close()
	if err := pty.Resize(console.WinSize{Width: 120, Height: 40}); err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), os.Args[0], "pull", "127.0.0.1:5000/berth/busybox")
	cmd.Env = []string{envRunAsBerth + "=1", "HOME=" + h.home, "BERTH_HOST=unix://" + h.sock, "DOCKER_CONFIG=" + h.configDir, "TERM=xterm"}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	var screen strings.Builder
	// Reading the master fails with EIO once berth exited and closed the pty.
	if _, err := io.Copy(&screen, pty); err != nil && !errors.Is(err, syscall.EIO) {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("pull on a terminal: %v\n%q", err, screen.String())
	}
	out := screen.String()
	first, second := img.Layers[0].Digest.Encoded()[:12], img.Layers[1].Digest.Encoded()[:12]
	for _, want := range []string{
		// The cursor goes up to the layer's line, clears it, draws the bar.
		"\x1b[1A\x1b[2K\r" + first + ": Downloading [=========================>                         ]     450B/900B\r",
		"\x1b[1A\x1b[2K\r" + second + ": Downloading [=========================>                         ]      1kB/2kB\r",
		"Status: Downloaded newer image for 127.0.0.1:5000/berth/busybox:latest",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal output lacks %q:\n%q", want, out)
		}
	}
}
