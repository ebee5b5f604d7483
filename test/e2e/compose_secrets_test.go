package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestComposeSecretsAndConfigs: the compose v5 clients put secrets and
// configs in a container: a file secret bind-mounted read-only at
// /run/secrets/<name> with the host file's mode and owner, and secrets and
// configs from an environment variable or inline content copied in before
// the container starts (PUT archive on a created container) at their
// targets with the mode, uid and gid the file asks for. docker-compose
// 1.29 knows only file secrets (configs are Swarm's there).
func TestComposeSecretsAndConfigs(t *testing.T) {
	forEachComposeClient(t, func(t *testing.T, c composeClient) {
		e := newComposeEnv(t, c, "sc")
		writeFile(t, filepath.Join(e.dir, "f.txt"), "file-secret\n")
		if err := os.Chmod(filepath.Join(e.dir, "f.txt"), 0o640); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(filepath.Join(e.dir, "f.txt"), 123, 456); err != nil {
			t.Fatal(err)
		}
		e.cenv = append(e.cenv, "APP_SECRET=env-secret", "APP_CONF=env-conf")
		yaml := `services:
  app:
    image: ` + e.Image + `
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    secrets:
      - file_secret
      - source: file_secret
        target: /etc/app/file.key
`
		if !c.v1 {
			yaml += `      - source: env_secret
        target: env.key
        uid: "1000"
        gid: "1001"
        mode: 0400
    configs:
      - source: inline_conf
        target: /etc/app/inline.conf
        uid: "33"
        mode: 0440
      - env_conf
`
		}
		yaml += `secrets:
  file_secret:
    file: ./f.txt
`
		if !c.v1 {
			yaml += `  env_secret:
    environment: APP_SECRET
configs:
  inline_conf:
    content: |
      x=1
  env_conf:
    environment: APP_CONF
`
		}
		writeFile(t, filepath.Join(e.dir, "compose.yaml"), yaml)
		e.compose("up", "-d")
		show := func(path string) string {
			return e.compose("exec", "-T", "app", "sh", "-c", "cat "+path+"; stat -c '%a %u:%g' "+path)
		}
		for path, want := range map[string]string{
			"/run/secrets/file_secret": "file-secret\n640 123:456\n",
			"/etc/app/file.key":        "file-secret\n640 123:456\n",
		} {
			if got := show(path); got != want {
				t.Errorf("%s: %q, want %q", path, got, want)
			}
		}
		if got := e.compose("exec", "-T", "app", "sh", "-c", "echo x >>/run/secrets/file_secret && echo written || echo read-only"); got != "read-only\n" {
			t.Errorf("a file secret is writable: %q", got)
		}
		if !c.v1 {
			for path, want := range map[string]string{
				"/run/secrets/env.key": "env-secret400 1000:1001\n",
				"/etc/app/inline.conf": "x=1\n440 33:0\n",
				"/env_conf":            "env-conf444 0:0\n",
			} {
				if got := show(path); got != want {
					t.Errorf("%s: %q, want %q", path, got, want)
				}
			}
		}
		e.compose("down", "-v")

		// An external secret is Swarm's: compose v5 refuses it with its
		// error, docker-compose 1.29 warns and leaves it out.
		writeFile(t, filepath.Join(e.dir, "compose.yaml"), `services:
  app:
    image: `+e.Image+`
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]
    secrets: [db_pass]
secrets:
  db_pass:
    external: true
`)
		out, errOut, code := e.composeErr("up", "-d")
		if c.v1 {
			if code != 0 || !strings.Contains(errOut, `Service "app" uses secret "db_pass" which is external. External secrets are not available to containers created by docker-compose.`) {
				t.Errorf("docker-compose up with an external secret: exit %d\n%s%s", code, out, errOut)
			}
		} else if code == 0 || !strings.Contains(errOut, "unsupported external secret db_pass") || strings.Contains(errOut, "daemon") {
			t.Errorf("%s up with an external secret: exit %d\n%s%s", c.name, code, out, errOut)
		}
		e.compose("down", "-v")
	})
}
