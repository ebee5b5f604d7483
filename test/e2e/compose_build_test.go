package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBerthComposeBuildSecrets: berth compose builds a service with
// build.secrets (a file and an environment variable) through Berth's
// builder and compose builds the other one on its classic path; the
// secrets reach the RUN that mounts them and nothing else. The compose v5
// plugin, without buildx, refuses the same project with compose's error.
func TestBerthComposeBuildSecrets(t *testing.T) {
	_, berth := binaries(t)
	e := newComposeEnv(t, composeClient{name: "berth compose", argv: []string{berth, "compose"}}, "sec")
	const apiKey = "key-0123456789"
	token := "token-value-1"
	files := map[string]string{
		"app/Dockerfile": `FROM ` + e.Image + `
RUN --mount=type=secret,id=token sha256sum /run/secrets/token | cut -c1-64 >/token.sha
RUN --mount=type=secret,id=apikey,required=true wc -c </run/secrets/apikey >/apikey.len
CMD ["sh", "-c", "cat /token.sha /apikey.len; trap 'exit 0' TERM; sleep 600 & wait"]
`,
		"plain/Dockerfile": `FROM ` + e.Image + `
RUN echo plain >/plain
CMD ["sh", "-c", "cat /plain; trap 'exit 0' TERM; sleep 600 & wait"]
`,
		"token.txt": token,
		"compose.yaml": `services:
  app:
    build:
      context: ./app
      secrets:
        - token
        - source: api_key
          target: apikey
  plain:
    build: ./plain
secrets:
  token:
    file: ./token.txt
  api_key:
    environment: API_KEY
`,
	}
	for name, content := range files {
		writeFile(t, filepath.Join(e.dir, name), content)
	}
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	e.cenv = append(e.cenv, "API_KEY="+apiKey)

	// The compose v5 plugin has no builder for secrets without buildx.
	plugin := &composeEnv{dockerEnv: e.dockerEnv, c: composeClient{name: "docker compose", argv: []string{stockDocker(t), "compose"}}, dir: e.dir, project: "sec", cenv: e.cenv}
	if _, errOut, code := plugin.composeErr("build", "app"); code == 0 || !strings.Contains(errOut, "the classic builder doesn't support secrets") {
		t.Errorf("docker compose build of a service with secrets: exit %d, %s", code, errOut)
	}

	// Compose prints its classic build to stdout, Berth's builder to stderr.
	out, errOut, _ := e.composeErr("build")
	errOut = out + errOut
	if !strings.Contains(errOut, "Building sec-app with Berth's builder (build secrets: [token apikey])") || !strings.Contains(errOut, "Successfully tagged sec-plain:latest") {
		t.Errorf("berth compose build output:\n%s", errOut)
	}
	if got := e.cli("run", "--rm", "sec-app", "cat", "/token.sha", "/apikey.len"); got != sum(token)+"\n"+"14\n" {
		t.Errorf("sec-app's RUN saw %q, want the token's sha256 and the key's length", got)
	}
	if got := e.cli("inspect", "--format", `{{index .Config.Labels "com.docker.compose.image.builder"}}`, "sec-plain"); got != "classic\n" {
		t.Errorf("sec-plain was built by %q, want compose's classic path", got)
	}
	// The secrets are in no layer, no config, no history.
	archive := filepath.Join(t.TempDir(), "app.tar")
	e.cli("save", "-o", archive, "sec-app")
	b, err := os.ReadFile(archive)
	if err != nil {
		t.Fatal(err)
	}
	hist := e.cli("history", "--no-trunc", "sec-app") + e.cli("inspect", "sec-app")
	for _, s := range []string{token, apiKey} {
		if strings.Contains(string(b), s) || strings.Contains(hist, s) {
			t.Errorf("secret %q in the saved image or its history", s)
		}
	}

	// up -d: the images are there, nothing is built.
	out, errOut, _ = e.composeErr("up", "-d")
	errOut = out + errOut
	if strings.Contains(errOut, "Berth's builder") || strings.Contains(errOut, "Building") {
		t.Errorf("up -d with the images present built:\n%s", errOut)
	}
	await(t, "app's output", func() bool { return strings.Contains(e.compose("logs", "app"), sum(token)) })

	// A new token: up -d --build --no-cache is not a flag of up, so
	// build --no-cache, then up -d recreates app with the new image.
	token = "token-value-2"
	writeFile(t, filepath.Join(e.dir, "token.txt"), token)
	e.compose("build", "--no-cache", "app")
	e.compose("up", "-d")
	await(t, "app's output with the new token", func() bool { return strings.Contains(e.compose("logs", "app"), sum(token)) })

	// Images missing: up -d builds both, each its way; --build rebuilds
	// both (compose's classic build for plain).
	e.compose("down", "--rmi", "all")
	if _, _, code := e.cliErr("image", "inspect", "sec-app"); code == 0 {
		t.Fatal("down --rmi all left sec-app")
	}
	out, errOut, _ = e.composeErr("up", "-d")
	errOut = out + errOut
	if !strings.Contains(errOut, "Building sec-app with Berth's builder") || !strings.Contains(errOut, "Successfully tagged sec-plain:latest") {
		t.Errorf("up -d with no images:\n%s", errOut)
	}
	out, errOut, _ = e.composeErr("up", "-d", "--build")
	errOut = out + errOut
	if !strings.Contains(errOut, "Building sec-app with Berth's builder") || !strings.Contains(errOut, "Successfully tagged sec-plain:latest") {
		t.Errorf("up -d --build:\n%s", errOut)
	}
	if got := e.compose("run", "--rm", "-T", "app", "cat", "/apikey.len"); got != "14\n" {
		t.Errorf("run --rm app = %q", got)
	}

	// A required secret that is not set fails the build, naming it.
	e.compose("down", "--rmi", "all")
	cmd := e.composeCmd(ctxT(t), []string{"API_KEY="}, "build", "app")
	b, err = cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(b), "API_KEY") {
		t.Errorf("build without API_KEY: %v\n%s", err, b)
	}
	e.compose("down", "-v")
}
