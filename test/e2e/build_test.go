package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/testimage"
	"github.com/berth-dev/berth/internal/testutil"
)

// buildSecret is the value of the e2e build's secret: it must be found
// nowhere in the image.
const buildSecret = "e2e-Secret-Value-7f3a9c"

// everyDirective is a multi-stage Dockerfile with every directive, global
// and stage ARGs, a heredoc, RUN mounts (cache, secret, bind, tmpfs), COPY
// --from/--chown/--chmod/--link, ADD of a local archive and of a URL, a
// stage that is not needed (and would fail) and ONBUILD.
func everyDirective(base, url string) string {
	return fmt.Sprintf(`# syntax=docker/dockerfile:1.7
ARG BASE=%s
ARG VERSION=1.0
FROM --platform=$BUILDPLATFORM ${BASE} AS builder
ARG VERSION
ENV BUILD_VERSION=${VERSION}
WORKDIR /src
COPY --chown=www-data:www-data src/ ./
ADD vendor.tar.gz /src/vendor/
ADD --chmod=0644 %s/remote.txt /src/remote.txt
RUN --mount=type=cache,target=/cache echo "compiled $BUILD_VERSION" > /src/app.out && cp /src/app.out /cache/last
RUN --mount=type=secret,id=token if [ -f /run/secrets/token ]; then sha256sum /run/secrets/token | cut -d" " -f1 > /token.sha; else echo none > /token.sha; fi
RUN --mount=type=bind,source=src,target=/mnt/src --mount=type=tmpfs,target=/scratch cp /mnt/src/main.txt /scratch/x && cat /scratch/x > /src/bound.txt
RUN <<EOF
echo heredoc > /src/heredoc.txt
EOF

FROM builder AS unused
RUN echo "this stage is not needed" && exit 1

FROM ${BASE}
MAINTAINER Berth Tests <tests@berth.example>
ARG VERSION
LABEL org.opencontainers.image.title="e2e" version="${VERSION}"
SHELL ["/bin/sh", "-c"]
COPY --from=builder /src/ /app/
COPY --from=builder --chmod=0640 /token.sha /app/token.sha
COPY --link <<EOF /etc/motd
welcome
EOF
WORKDIR /app
EXPOSE 8080/tcp
VOLUME ["/data"]
ENV GREETING=hello
HEALTHCHECK --interval=30s --timeout=3s CMD test -f /app/app.out
STOPSIGNAL SIGINT
ONBUILD RUN echo child
USER www-data
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat /app/app.out /app/remote.txt /app/vendor/lib.txt /app/heredoc.txt /app/bound.txt /etc/motd; echo $GREETING; id -un"]
`, base, url)
}

func tgz(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for n, c := range files {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg})
		tw.Write([]byte(c))
	}
	tw.Close()
	zw.Close()
	return buf.String()
}

// buildContext writes the e2e build's context dir.
func buildContext(t *testing.T, base, url string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range map[string]string{
		"Dockerfile":         everyDirective(base, url),
		".dockerignore":      "*.log\nsrc/notes-*.txt\n!src/notes-keep.txt\n",
		"src/main.txt":       "main\n",
		"src/notes-drop.txt": "dropped\n",
		"src/notes-keep.txt": "kept\n",
		"debug.log":          "never sent\n",
		"vendor.tar.gz":      tgz(t, map[string]string{"lib.txt": "vendored\n"}),
	} {
		writeFile(t, filepath.Join(dir, name), content)
	}
	return dir
}

// remoteServer serves the file ADD fetches.
func remoteServer(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "remote\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// savedConfig returns the image config as `docker save` writes it.
func savedConfig(t *testing.T, archive []byte) dockerspec.DockerOCIImage {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var manifest []struct{ Config string }
	if err := json.Unmarshal(files["manifest.json"], &manifest); err != nil || len(manifest) != 1 {
		t.Fatalf("manifest.json: %v %s", err, files["manifest.json"])
	}
	var cfg dockerspec.DockerOCIImage
	if err := json.Unmarshal(files[manifest[0].Config], &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// runImage runs the image's own command in a host-network pod through the
// CRI (no CNI needed) and returns its output.
func runImage(t *testing.T, d *daemon, image string) string {
	t.Helper()
	rt, _ := d.CRI()
	ctx := ctxT(t)
	logDir := t.TempDir()
	podCfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: "run-built", Namespace: "e2e", Uid: "uid-run-built"},
		LogDirectory: logDir,
		Linux: &runtimeapi.LinuxPodSandboxConfig{SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_NODE, Pid: runtimeapi.NamespaceMode_CONTAINER},
		}},
	}
	pod, err := rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podCfg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		rt.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: pod.PodSandboxId})
		rt.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: pod.PodSandboxId})
	}()
	c, err := rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: pod.PodSandboxId, SandboxConfig: podCfg,
		Config: &runtimeapi.ContainerConfig{Metadata: &runtimeapi.ContainerMetadata{Name: "app"}, Image: &runtimeapi.ImageSpec{Image: image}, LogPath: "app.log"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c.ContainerId}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(30*time.Second, func() bool {
		st, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.ContainerId})
		return err == nil && st.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED
	}) {
		t.Fatal("the built image's container did not exit")
	}
	b, err := os.ReadFile(filepath.Join(logDir, "app.log"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if f := strings.SplitN(l, " ", 4); len(f) == 4 {
			out.WriteString(f[3] + "\n")
		}
	}
	return out.String()
}

// checkEveryDirective asserts what the e2e image must be: its config and
// history as docker would give them, its behaviour, and no trace of the
// secret.
func checkEveryDirective(t *testing.T, d *daemon, cli func(args ...string) string, tag string, withSecret bool) {
	t.Helper()
	archive := filepath.Join(t.TempDir(), "image.tar")
	cli("save", "-o", archive, tag)
	raw, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(buildSecret)) {
		t.Fatal("the build secret is in `docker save` output")
	}
	c := savedConfig(t, raw)
	cfg := c.Config
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"user", cfg.User == "www-data"},
		{"workdir", cfg.WorkingDir == "/app"},
		{"env", slices.Contains(cfg.Env, "GREETING=hello") && !slices.ContainsFunc(cfg.Env, func(e string) bool { return strings.HasPrefix(e, "VERSION=") })},
		{"labels", cfg.Labels["org.opencontainers.image.title"] == "e2e" && cfg.Labels["version"] == "1.0" && cfg.Labels["built-by"] == "e2e"},
		{"ports", len(cfg.ExposedPorts) == 1},
		{"volumes", len(cfg.Volumes) == 1},
		{"stop signal", cfg.StopSignal == "SIGINT"},
		{"healthcheck", cfg.Healthcheck != nil && cfg.Healthcheck.Interval == 30*time.Second && slices.Equal(cfg.Healthcheck.Test, []string{"CMD-SHELL", "test -f /app/app.out"})},
		{"onbuild", slices.Equal(cfg.OnBuild, []string{"RUN echo child"})},
		{"shell", slices.Equal(cfg.Shell, []string{"/bin/sh", "-c"})},
		{"entrypoint", slices.Equal(cfg.Entrypoint, []string{"/bin/sh", "-c"}) && len(cfg.Cmd) == 1},
		{"author", c.Author == "Berth Tests <tests@berth.example>"},
		{"platform", c.OS == "linux" && c.Architecture != ""},
		{"created", c.Created != nil && time.Since(*c.Created) < time.Hour},
	} {
		if !check.ok {
			t.Errorf("config: %s wrong: %+v", check.what, c)
		}
	}
	var layers int
	var createdBy []string
	for _, h := range c.History {
		createdBy = append(createdBy, h.CreatedBy)
		if !h.EmptyLayer {
			layers++
		}
	}
	if layers != len(c.RootFS.DiffIDs) {
		t.Errorf("%d non-empty history entries for %d layers", layers, len(c.RootFS.DiffIDs))
	}
	for _, want := range []string{"berth testimage", "MAINTAINER Berth Tests <tests@berth.example>", "ARG VERSION=1.0", "COPY /src/ /app/ # buildkit",
		"COPY --chmod=0640 /token.sha /app/token.sha # buildkit", "COPY <<EOF /etc/motd # buildkit", "WORKDIR /app", "EXPOSE [8080/tcp]",
		"VOLUME [/data]", "ENV GREETING=hello", "STOPSIGNAL SIGINT", "USER www-data", `ENTRYPOINT ["/bin/sh" "-c"]`} {
		if !slices.Contains(createdBy, want) {
			t.Errorf("history lacks %q:\n%s", want, strings.Join(createdBy, "\n"))
		}
	}
	if got := cli("image", "inspect", "--format", "{{.Config.Healthcheck.Test}} {{.Config.OnBuild}} {{.Config.StopSignal}} {{.Config.Shell}}", tag); got != "[CMD-SHELL test -f /app/app.out] [RUN echo child] SIGINT [/bin/sh -c]\n" {
		t.Errorf("docker inspect of the docker-only config fields: %q", got)
	}
	hist := cli("history", "--no-trunc", "--format", "{{.CreatedBy}}", tag)
	if !strings.Contains(hist, "ENTRYPOINT") || !strings.Contains(hist, "berth testimage") {
		t.Errorf("docker history:\n%s", hist)
	}

	out := runImage(t, d, tag)
	want := "compiled 1.0\nremote\nvendored\nheredoc\nmain\nwelcome\nhello\nwww-data\n"
	if out != want {
		t.Errorf("the image's command printed %q, want %q", out, want)
	}
	// The .dockerignore kept its exception and dropped the rest; the
	// secret's checksum made it, the secret did not.
	fs := savedFiles(t, raw)
	if _, ok := fs["app/notes-keep.txt"]; !ok {
		t.Error("src/notes-keep.txt (a .dockerignore exception) is not in the image")
	}
	for p := range fs {
		if strings.Contains(p, "notes-drop") || strings.Contains(p, "debug.log") {
			t.Errorf("%s (ignored by .dockerignore) is in the image", p)
		}
	}
	sha := strings.TrimSpace(fs["app/token.sha"])
	if withSecret && !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sha) || !withSecret && sha != "none" {
		t.Errorf("app/token.sha = %q (secret given: %v)", sha, withSecret)
	}
}

// savedFiles returns the regular files of a saved image's layers (path ->
// content, upper layers winning).
func savedFiles(t *testing.T, archive []byte) map[string]string {
	t.Helper()
	blobs := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		blobs[h.Name] = b
	}
	var manifest []struct{ Layers []string }
	json.Unmarshal(blobs["manifest.json"], &manifest)
	out := map[string]string{}
	for _, l := range manifest[0].Layers {
		var r io.Reader = bytes.NewReader(blobs[l])
		if zr, err := gzip.NewReader(bytes.NewReader(blobs[l])); err == nil {
			r = zr
		}
		lr := tar.NewReader(r)
		for {
			h, err := lr.Next()
			if err != nil {
				break
			}
			if h.Typeflag == tar.TypeReg {
				b, _ := io.ReadAll(lr)
				out[strings.TrimPrefix(h.Name, "./")] = string(b)
			}
		}
	}
	return out
}

// stepStates parses plain progress ("#N [i/n] INSTR", then "#N CACHED" or
// "#N DONE ...") into instruction -> "CACHED" or "DONE".
func stepStates(out string) map[string]string {
	names := map[string]string{}
	states := map[string]string{}
	step := regexp.MustCompile(`^#([0-9]+) \[[0-9]+/[0-9]+\] (.*)$`)
	for _, l := range strings.Split(out, "\n") {
		if m := step.FindStringSubmatch(l); m != nil {
			names[m[1]] = m[2]
			continue
		}
		f := strings.SplitN(l, " ", 3)
		if len(f) >= 2 && strings.HasPrefix(f[0], "#") && (f[1] == "CACHED" || f[1] == "DONE") {
			if n, ok := names[strings.TrimPrefix(f[0], "#")]; ok {
				states[n] = f[1]
			}
		}
	}
	return states
}

// TestBuildWithBerth builds the every-directive Dockerfile with `berth
// build` (a secret, a .dockerignore, labels, several tags), checks the
// image, then the cache: an unchanged rebuild is CACHED throughout, a
// changed file rebuilds from its COPY on, --no-cache and a prune run
// everything again.
func TestBuildWithBerth(t *testing.T) {
	reg := newRegistry(t)
	base := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemonWith(t, reg, daemonOptions{Shim: shimBinary(t)})
	_, berth := binaries(t)
	home := t.TempDir()
	env := []string{"BERTH_HOST=unix://" + d.DockerSock, "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}
	cli := func(args ...string) string { return run(t, env, berth, args...) }
	dir := buildContext(t, base.Ref, remoteServer(t))
	secretFile := filepath.Join(t.TempDir(), "token")
	writeFile(t, secretFile, buildSecret)
	iid := filepath.Join(t.TempDir(), "iid")
	build := func(extra ...string) (string, string) {
		t.Helper()
		args := append([]string{"build", "--progress", "plain", "--secret", "id=token,src=" + secretFile, "-t", "e2e/every:1", "-t", "e2e/every:latest",
			"--label", "built-by=e2e", "--iidfile", iid}, extra...)
		stdout, stderr, err := runErr(env, berth, append(args, dir)...)
		if err != nil {
			t.Fatalf("berth build: %v\n%s%s", err, stdout, stderr)
		}
		if strings.Contains(stdout+stderr, buildSecret) {
			t.Fatal("the build secret is in the build output")
		}
		id, _ := os.ReadFile(iid)
		return stderr, string(id)
	}
	out, id := build()
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(id) || strings.Contains(out, "not needed") {
		t.Fatalf("iidfile %q, output:\n%s", id, out)
	}
	if got := strings.TrimSpace(cli("images", "-q", "--no-trunc", "e2e/every")); got != id+"\n"+id && got != id {
		t.Errorf("images e2e/every: %q", got)
	}
	checkEveryDirective(t, d, cli, "e2e/every:1", true)

	// Unchanged, and after a restart of berthd (the cache is on disk):
	// every step but the FROMs comes from the cache, and the image is the
	// same.
	d.Stop()
	d.Start()
	out, again := build()
	states := stepStates(out)
	if again != id || len(states) < 20 {
		t.Fatalf("rebuild gave %s (first %s); steps %v\n%s", again, id, states, out)
	}
	for instr, st := range states {
		if !strings.HasPrefix(instr, "FROM") && st != "CACHED" {
			t.Errorf("unchanged rebuild ran %q (%s)", instr, st)
		}
	}
	// A changed file: the steps before its COPY stay cached, the COPY and
	// what follows in that stage run again.
	writeFile(t, filepath.Join(dir, "src", "main.txt"), "changed\n")
	out, changed := build()
	states = stepStates(out)
	if changed == id || states["WORKDIR /src"] != "CACHED" || states["COPY --chown=www-data:www-data src/ ./"] != "DONE" || states["ENV GREETING=hello"] != "DONE" {
		t.Errorf("after a change: %v", states)
	}
	if got := runImage(t, d, "e2e/every:1"); !strings.Contains(got, "changed\n") {
		t.Errorf("the rebuilt image printed %q", got)
	}
	out, _ = build("--no-cache")
	for instr, st := range stepStates(out) {
		if st == "CACHED" {
			t.Errorf("--no-cache reused %q", instr)
		}
	}
	if got := strings.TrimSpace(cli("build", "-q", "--secret", "id=token,src="+secretFile, dir)); !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(got) {
		t.Errorf("build -q printed %q", got)
	}
	pruned := cli("builder", "prune", "-af")
	if !strings.Contains(pruned, "Total reclaimed space") {
		t.Errorf("builder prune:\n%s", pruned)
	}
	out, _ = build()
	if st := stepStates(out)["WORKDIR /src"]; st != "DONE" {
		t.Errorf("after a prune WORKDIR was %s", st)
	}
}

// TestBuildWithDockerCLI builds the same Dockerfile with the stock docker
// CLI through the classic POST /build (no secret: the classic API has no
// way to send one, so the optional secret mount is absent).
func TestBuildWithDockerCLI(t *testing.T) {
	docker := testutil.LookPath(t, "docker", "make deps installs a docker CLI")
	reg := newRegistry(t)
	base := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemonWith(t, reg, daemonOptions{Shim: shimBinary(t)})
	home := t.TempDir()
	env := []string{"DOCKER_HOST=unix://" + d.DockerSock, "DOCKER_BUILDKIT=0", "HOME=" + home, "DOCKER_CONFIG=" + filepath.Join(home, ".docker")}
	cli := func(args ...string) string { return run(t, env, docker, args...) }
	dir := buildContext(t, base.Ref, remoteServer(t))
	iid := filepath.Join(t.TempDir(), "iid")
	out := cli("build", "-t", "e2e/every:1", "--label", "built-by=e2e", "--iidfile", iid, dir)
	id, _ := os.ReadFile(iid)
	if !strings.Contains(out, "Step 1/") || !strings.Contains(out, "Successfully built "+strings.TrimPrefix(string(id), "sha256:")[:12]) ||
		!strings.Contains(out, "Successfully tagged e2e/every:1") || strings.Contains(out, "not needed") {
		t.Fatalf("docker build output (iid %q):\n%s", id, out)
	}
	checkEveryDirective(t, d, cli, "e2e/every:1", false)
	out = cli("build", "-t", "e2e/every:1", "--label", "built-by=e2e", "--iidfile", iid, dir)
	again, _ := os.ReadFile(iid)
	if string(again) != string(id) || strings.Count(out, " ---> Using cache") < 20 || strings.Contains(out, "Running in") {
		t.Errorf("rebuild (%s, first %s):\n%s", again, id, out)
	}
	if got := strings.TrimSpace(cli("build", "-q", "--label", "built-by=e2e", dir)); got != string(id) {
		t.Errorf("build -q printed %q, want %q", got, id)
	}
	// A bad Dockerfile: a non-zero exit and the line in the message.
	writeFile(t, filepath.Join(dir, "bad.Dockerfile"), "FROM "+base.Ref+"\nRUN true\nNOPE now\n")
	_, stderr, err := runErr(env, docker, "build", "-f", filepath.Join(dir, "bad.Dockerfile"), dir)
	if err == nil || !strings.Contains(stderr, "bad.Dockerfile:3") || !strings.Contains(stderr, "unknown instruction: NOPE") {
		t.Errorf("bad Dockerfile: %v\n%s", err, stderr)
	}
	if out := cli("builder", "prune", "-af"); !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("builder prune:\n%s", out)
	}
}

// TestKill9DuringBuild kills berthd while a RUN step runs: after a
// restart no image is tagged, no build container runs, no mount, snapshot
// or temp dir is left, and the next build works.
func TestKill9DuringBuild(t *testing.T) {
	reg := newRegistry(t)
	base := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemonWith(t, reg, daemonOptions{Shim: shimBinary(t)})
	_, berth := binaries(t)
	env := []string{"BERTH_HOST=unix://" + d.DockerSock, "HOME=" + t.TempDir()}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM "+base.Ref+"\nCOPY f /f\nRUN echo started && sleep 300\n")
	writeFile(t, filepath.Join(dir, "f"), "x\n")
	// On the bridge when the plugins are there: the sweep must also take
	// the build's sandbox off the network.
	network := "host"
	if builtCNIPlugins(t) != "" {
		network = "bridge"
	}
	bg := startBG(t, "env", append(slices.Clone(env), berth, "build", "--progress", "plain", "--network", network, "-t", "e2e/killed:1", dir)...)
	if !bg.waitLine(60*time.Second, func(l string) bool { return strings.Contains(l, "started") }) {
		t.Fatalf("the RUN step did not start:\n%s", bg.output())
	}
	// The RUN's sleep: a "sleep 300" in the cgroup of one of this
	// daemon's containers ("/berth-<id>"). Other tests on the machine run
	// sleeps of their own, which are none of this test's business.
	containers, _ := os.ReadDir(filepath.Join(d.Root, "runtime", "containers"))
	ours := func(pid string) bool {
		c, err := os.ReadFile("/proc/" + pid + "/cmdline")
		if err != nil || string(c) != "sleep\x00300\x00" {
			return false
		}
		cg, _ := os.ReadFile("/proc/" + pid + "/cgroup")
		for _, ct := range containers {
			if strings.Contains(string(cg), "/berth-"+ct.Name()+"\n") {
				return true
			}
		}
		return false
	}
	var sleeper string
	if !waitFor(10*time.Second, func() bool {
		containers, _ = os.ReadDir(filepath.Join(d.Root, "runtime", "containers"))
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if ours(e.Name()) {
				sleeper = e.Name()
				return true
			}
		}
		return false
	}) {
		t.Fatal("no build container process")
	}
	d.Kill9()
	bg.stop()
	d.Start()
	if ours(sleeper) {
		if pid, err := strconv.Atoi(sleeper); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("the build container (its sleep, pid %s) still runs after the restart", sleeper)
	}
	if got := strings.TrimSpace(run(t, env, berth, "images", "-q", "e2e/killed")); got != "" {
		t.Errorf("a half-built image is tagged: %q", got)
	}
	if network == "bridge" {
		if veths, _ := exec.Command("ip", "-o", "link", "show", "master", d.Networks.Bridge).Output(); strings.TrimSpace(string(veths)) != "" {
			t.Errorf("veths left on %s: %q", d.Networks.Bridge, veths)
		}
	}
	for _, sub := range []string{"snapshots", "builder/tmp", "runtime/containers", "runtime/sandboxes"} {
		ents, _ := os.ReadDir(filepath.Join(d.Root, sub))
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left in %s: %s", sub, e.Name())
			}
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(d.State, "builder")); len(ents) != 0 {
		t.Errorf("left in the state dir: %d entries", len(ents))
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, filepath.Dir(d.Root)+"/") {
				t.Errorf("mount left: %s", l)
			}
		}
	}
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM "+base.Ref+"\nCOPY f /f\nRUN echo again > /again\n")
	run(t, env, berth, "build", "--progress", "plain", "-t", "e2e/killed:1", dir)
	if got := strings.TrimSpace(run(t, env, berth, "images", "-q", "e2e/killed")); got == "" {
		t.Error("the build after the restart made no image")
	}
}

// TestBuildOnBridge: by default (and with --network bridge) the RUN steps
// of a build share one namespace on the daemon's default bridge (an
// address of its pool, the build's hostname), as docker's classic builder
// runs them; --network host gives the host's network, --network none only
// a loopback. Afterwards no sandbox, veth or lease of the build is left.
func TestBuildOnBridge(t *testing.T) {
	testutil.LookPath(t, "iptables-save", "the CNI plugins need iptables")
	if builtCNIPlugins(t) == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("no CNI plugins built (make build)")
		}
		t.Skip("no CNI plugins built (make build)")
	}
	reg := newRegistry(t)
	base := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemonWith(t, reg, daemonOptions{Shim: shimBinary(t)})
	_, berth := binaries(t)
	env := []string{"BERTH_HOST=unix://" + d.DockerSock, "HOME=" + t.TempDir()}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM "+base.Ref+"\n"+
		"RUN ip -4 -o addr show eth0 | awk '{print $4}' > /addr && hostname > /host1\n"+
		"RUN hostname > /host2 && cat /addr /host1 /host2 && grep -c . /etc/resolv.conf\n")
	archive := filepath.Join(t.TempDir(), "i.tar")
	for _, flags := range [][]string{nil, {"--network", "bridge"}} {
		args := append(append([]string{"build", "--progress", "plain", "--no-cache"}, flags...), "-t", "e2e/bridge", dir)
		run(t, env, berth, args...)
		run(t, env, berth, "save", "-o", archive, "e2e/bridge")
		raw, _ := os.ReadFile(archive)
		fs := savedFiles(t, raw)
		ip, _, err := net.ParseCIDR(strings.TrimSpace(fs["addr"]))
		if err != nil || !d.Networks.Pool.Contains(ip) {
			t.Errorf("build %v: the RUN step's address %q is not in the daemon's pool %s", flags, fs["addr"], d.Networks.Pool)
		}
		if fs["host1"] == "" || fs["host1"] != fs["host2"] {
			t.Errorf("build %v: the build's RUN steps have hostnames %q and %q, want one", flags, fs["host1"], fs["host2"])
		}
		for _, sub := range []string{"runtime/sandboxes", "runtime/containers", "snapshots"} {
			if ents, _ := os.ReadDir(filepath.Join(d.Root, sub)); len(ents) != 0 {
				t.Errorf("build %v: left in %s: %d entries", flags, sub, len(ents))
			}
		}
		if ents, _ := os.ReadDir(filepath.Join(d.State, "ns", "net")); len(ents) != 0 {
			t.Errorf("build %v: pinned network namespaces left: %d", flags, len(ents))
		}
		if veths, err := exec.Command("ip", "-o", "link", "show", "master", d.Networks.Bridge).Output(); err != nil || strings.TrimSpace(string(veths)) != "" {
			t.Errorf("build %v: veths left on %s: %q %v", flags, d.Networks.Bridge, veths, err)
		}
	}
	// --network host: the step sees the host's interfaces (no eth0 of the
	// bridge pool); none: only a loopback.
	writeFile(t, filepath.Join(dir, "Dockerfile"), "FROM "+base.Ref+"\nRUN ip -4 -o addr | awk '{print $4}' > /addrs\n")
	for _, mode := range []string{"host", "none"} {
		run(t, env, berth, "build", "--progress", "plain", "--network", mode, "-t", "e2e/"+mode+"net", dir)
		run(t, env, berth, "save", "-o", archive, "e2e/"+mode+"net")
		raw, _ := os.ReadFile(archive)
		addrs := savedFiles(t, raw)["addrs"]
		switch {
		case mode == "host" && (!strings.Contains(addrs, "127.0.0.1/8") || strings.Count(addrs, "\n") < 2):
			t.Errorf("a --network host build's RUN saw %q, not the host's addresses", addrs)
		case mode == "none" && addrs != "127.0.0.1/8\n":
			t.Errorf("a --network none build's RUN saw %q, want only the loopback", addrs)
		}
	}
}
