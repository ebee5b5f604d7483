package e2e

import (
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// tutorialFiles is the tutorial's compose app, offline: a web built from
// ./web (busybox httpd, a CGI that asks redis for a hit count), a
// redis-like counter (nc) with a named volume that a one-shot setup
// service seeds, and a worker that reaches redis by service name. redis
// takes 2 s to become healthy; web waits for that (service_healthy), redis
// for setup to succeed (service_completed_successfully). web sits on two
// networks, with a file secret and a file config.
func tutorialFiles(image, webImage string) map[string]string {
	return map[string]string{
		"web/Dockerfile": `FROM ` + image + `
COPY index.html /www/index.html
COPY hits.sh /www/cgi-bin/hits
RUN chmod 755 /www/cgi-bin/hits
EXPOSE 80
CMD ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 -h /www & wait"]
`,
		"web/index.html": "hello from web\n",
		"web/hits.sh": `#!/bin/sh
echo "Content-Type: text/plain"
echo
echo "Hello from $GREETING! I have been seen $(nc $REDIS_HOST 6379 </dev/null) times."
`,
		"db_password.txt": "s3cret\n",
		"site.key":        "site-key\n",
		"web.conf":        "listen 80\n",
		"compose.yaml": `services:
  web:
    build: ./web
    image: ` + webImage + `
    ports:
      - "${WEB_PORT}:80"
    environment:
      GREETING: compose
      REDIS_HOST: redis
    networks: [front, back]
    secrets:
      - source: site_key
        target: site.key
    configs:
      - source: web_conf
        target: /etc/web.conf
    depends_on:
      redis:
        condition: service_healthy
  redis:
    image: ` + image + `
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 2; touch /tmp/ready; nc -ll -p 6379 -e sh -c 'n=$$(cat /data/count); n=$$((n+1)); echo $$n >/data/count; echo \"redis: hit $$n\" >&2; echo $$n' & wait"]
    volumes:
      - data:/data
    networks: [back]
    secrets: [db_password]
    healthcheck:
      test: ["CMD", "test", "-f", "/tmp/ready"]
      interval: 1s
      retries: 30
    depends_on:
      setup:
        condition: service_completed_successfully
  setup:
    image: ` + image + `
    command: ["sh", "-c", "test -f /data/count || echo 0 >/data/count"]
    volumes:
      - data:/data
    networks: [back]
  worker:
    image: ` + image + `
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo \"worker got $$(nc redis 6379 </dev/null)\"; sleep 1 & wait; done"]
    environment:
      MODE: ${WORKER_MODE:-a}
    networks: [back]
    depends_on:
      - redis
networks:
  front: {}
  back: {}
volumes:
  data: {}
secrets:
  db_password:
    file: ./db_password.txt
  site_key:
    file: ./site.key
configs:
  web_conf:
    file: ./web.conf
`,
	}
}

// TestComposeTutorial runs the tutorial's compose chapter with each of the
// three compose clients against its own berthd.
func TestComposeTutorial(t *testing.T) {
	forEachComposeClient(t, func(t *testing.T, c composeClient) {
		e := newComposeEnv(t, c, "tut")
		webImage := e.reg.Host + "/tut/web:v1"
		for name, content := range tutorialFiles(e.Image, webImage) {
			writeFile(t, filepath.Join(e.dir, name), content)
		}
		port := freePort(t)
		e.cenv = append(e.cenv, "WEB_PORT="+strconv.Itoa(port))
		composeTutorial(t, e, port, webImage)
	})
}

var (
	workerLine = regexp.MustCompile(`worker got \d+`)
	hitsLine   = regexp.MustCompile(`^Hello from compose! I have been seen \d+ times\.\n$`)
)

func composeTutorial(t *testing.T, e *composeEnv, port int, webImage string) {
	// 1. up -d: built, pulled, created and started in dependency order.
	e.compose("up", "-d")
	setup, redis, web, worker := e.one("setup"), e.one("redis"), e.one("web"), e.one("worker")
	for _, c := range []struct {
		name, state string
		code        int
	}{{setup.Name, "exited", 0}, {redis.Name, "running", 0}, {web.Name, "running", 0}, {worker.Name, "running", 0}} {
		if got := e.cli("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", c.name); got != fmt.Sprintf("%s %d\n", c.state, c.code) {
			t.Errorf("after up -d, %s is %q, want %s %d", c.name, got, c.state, c.code)
		}
	}
	if want := "/" + e.name("web", 1); web.Name != want {
		t.Errorf("web's container is %s, want %s", web.Name, want)
	}
	// service_completed_successfully: redis started after setup ended.
	if setupEnd, redisStart := parseTime(t, "setup FinishedAt", setup.State.FinishedAt), parseTime(t, "redis StartedAt", redis.State.StartedAt); redisStart.Before(setupEnd) {
		t.Errorf("redis started at %s, before setup finished (%s)", redisStart, setupEnd)
	}
	// service_healthy: web started after redis's first passing probe,
	// which comes 2 s after redis started.
	await(t, "redis healthy", func() bool {
		h := e.inspect(redis.ID).State.Health
		return h != nil && h.Status == "healthy"
	})
	redis = e.inspect(redis.ID)
	webStart := parseTime(t, "web StartedAt", web.State.StartedAt)
	var healthyAt time.Time
	for _, r := range redis.State.Health.Log {
		if r.ExitCode == 0 {
			healthyAt = r.End
			break
		}
	}
	if healthyAt.IsZero() || webStart.Before(healthyAt) {
		t.Errorf("web started at %s, redis's first passing probe ended at %s (log %+v)", webStart, healthyAt, redis.State.Health.Log)
	}
	if d := webStart.Sub(parseTime(t, "redis StartedAt", redis.State.StartedAt)); d < 2*time.Second {
		t.Errorf("web started %s after redis, which needs 2 s to be healthy", d)
	}
	// web is on both its networks from the start.
	if got := slices.Sorted(maps.Keys(web.NetworkSettings.Networks)); !slices.Equal(got, []string{"tut_back", "tut_front"}) {
		t.Errorf("web's networks: %v", got)
	}
	// A second up -d changes nothing: same config hash, same image ID.
	e.compose("up", "-d")
	for _, c := range []struct{ service, id string }{{"redis", redis.ID}, {"web", web.ID}, {"worker", worker.ID}} {
		if now := e.one(c.service); now.ID != c.id || now.State.StartedAt != e.inspect(c.id).State.StartedAt {
			t.Errorf("second up -d recreated or restarted %s", c.service)
		}
	}

	// 2. The web port answers, and web reaches redis by name.
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", port)); err != nil || body != "hello from web\n" {
		t.Errorf("GET / on the web port: %q, %v", body, err)
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/hits", port)); err != nil || !hitsLine.MatchString(body) {
		t.Errorf("GET /cgi-bin/hits: %q, %v", body, err)
	}

	// 3. ps.
	out := e.compose("ps")
	for _, s := range []string{"web", "redis", "worker"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(e.name(s, 1)) + `\s.*\bUp\b`).MatchString(out) {
			t.Errorf("ps lacks %s up:\n%s", e.name(s, 1), out)
		}
	}
	if !strings.Contains(out, fmt.Sprintf("0.0.0.0:%d->80/tcp", port)) {
		t.Errorf("ps lacks web's port:\n%s", out)
	}

	// 4. exec -T: environment, the volume, secrets and configs.
	if got := e.compose("exec", "-T", "web", "sh", "-c", "echo $GREETING $REDIS_HOST"); got != "compose redis\n" {
		t.Errorf("exec -T web env = %q", got)
	}
	if got := e.compose("exec", "-T", "redis", "cat", "/data/count"); !regexp.MustCompile(`^\d+\n$`).MatchString(got) {
		t.Errorf("exec -T redis cat /data/count = %q", got)
	}
	if got := e.compose("exec", "-T", "redis", "cat", "/run/secrets/db_password"); got != "s3cret\n" {
		t.Errorf("redis's secret = %q", got)
	}
	// A file secret is the host's file, read-only, with its mode and owner.
	if got := e.compose("exec", "-T", "web", "sh", "-c", "cat /run/secrets/site.key; stat -c '%a %u:%g' /run/secrets/site.key; echo x >/run/secrets/site.key || echo read-only"); got != "site-key\n644 0:0\nread-only\n" {
		t.Errorf("web's secret site.key: %q", got)
	}
	if !e.c.v1 {
		if got := e.compose("exec", "-T", "web", "cat", "/etc/web.conf"); got != "listen 80\n" {
			t.Errorf("web's config = %q", got)
		}
	}
	if got := e.compose("exec", "-T", "web", "sh", "-c", "ip -o -4 addr | grep -cv ' lo '"); got != "2\n" {
		t.Errorf("web's interfaces besides lo: %q", got)
	}
	if _, _, code := e.composeErr("exec", "-T", "web", "sh", "-c", "exit 7"); code != 7 {
		t.Errorf("exec -T exit code %d, want 7", code)
	}

	// 5. Service names resolve on the project's networks.
	redisIP := redis.NetworkSettings.Networks["tut_back"].IPAddress.String()
	if out := e.compose("exec", "-T", "worker", "nslookup", "redis"); !strings.Contains(out, "Address: "+redisIP) {
		t.Errorf("nslookup redis from worker (redis is %s):\n%s", redisIP, out)
	}
	webBackIP := web.NetworkSettings.Networks["tut_back"].IPAddress.String()
	if out := e.compose("exec", "-T", "worker", "nslookup", "web"); !strings.Contains(out, "Address: "+webBackIP) {
		t.Errorf("nslookup web from worker (web is %s on back):\n%s", webBackIP, out)
	}

	// 6. logs, logs -f across containers.
	await(t, "worker's log", func() bool { return workerLine.MatchString(e.compose("logs", "worker")) })
	follow := e.startBG("logs", "-f")
	if !follow.waitFor(20*time.Second, func(out string) bool {
		return regexp.MustCompile(`worker[-_]1 +\| worker got \d+`).MatchString(out) && strings.Contains(out, "| redis: hit")
	}) {
		t.Errorf("logs -f did not show worker and redis lines:\n%s", follow.output())
	}
	// It follows containers that appear while it runs: 7. up -d --scale.
	e.compose("up", "-d", "--scale", "worker=3")
	workers := e.containers("worker")
	if len(workers) != 3 {
		t.Fatalf("--scale worker=3 gave %d workers", len(workers))
	}
	for _, w := range workers {
		if w.State != "running" {
			t.Errorf("worker %v is %s", w.Names, w.State)
		}
	}
	if !follow.waitFor(30*time.Second, func(out string) bool {
		return regexp.MustCompile(`worker[-_]2 +\| worker got \d+`).MatchString(out) && regexp.MustCompile(`worker[-_]3 +\| worker got \d+`).MatchString(out)
	}) {
		t.Errorf("logs -f did not follow the new workers:\n%s", follow.output())
	}
	follow.kill()
	out = e.compose("logs", "--tail", "1", "worker")
	if n := lines(out, workerLine); n != 3 {
		t.Errorf("logs --tail 1 worker: %d worker lines, want 3:\n%s", n, out)
	}

	// 8. A file in the volume survives down and up.
	e.compose("exec", "-T", "redis", "sh", "-c", "echo kept >/data/marker")
	e.compose("down")
	if cs := e.containers(""); len(cs) != 0 {
		t.Errorf("down left %d containers", len(cs))
	}
	vols, err := e.api.VolumeList(ctxT(t), client.VolumeListOptions{Filters: client.Filters{}.Add("label", "com.docker.compose.project=tut")})
	if err != nil || len(vols.Items) != 1 || vols.Items[0].Name != "tut_data" {
		t.Errorf("volumes after down: %+v, %v", vols.Items, err)
	}
	e.compose("up", "-d")
	if got := e.compose("exec", "-T", "redis", "cat", "/data/marker"); got != "kept\n" {
		t.Errorf("the volume's file after down + up: %q", got)
	}

	// A changed service is recreated (compose renames the new container
	// into place, connects it before it starts), the others stay.
	oldWorker, redisID := e.one("worker"), e.one("redis").ID
	if out, errOut, code := e.composeEnvErr([]string{"WORKER_MODE=b"}, "up", "-d"); code != 0 {
		t.Fatalf("up -d with worker changed: exit %d\n%s%s", code, out, errOut)
	}
	newWorker := e.one("worker")
	if newWorker.ID == oldWorker.ID || newWorker.Name != oldWorker.Name || newWorker.State.Status != "running" || e.one("redis").ID != redisID {
		t.Errorf("up -d with worker changed: worker %s %s %s (was %s), redis %s (was %s)", newWorker.ID[:12], newWorker.Name, newWorker.State.Status, oldWorker.ID[:12], e.one("redis").ID[:12], redisID[:12])
	}
	if got := e.compose("exec", "-T", "worker", "sh", "-c", "echo $MODE $(nc redis 6379 </dev/null)"); !regexp.MustCompile(`^b \d+\n$`).MatchString(got) {
		t.Errorf("the recreated worker: %q", got)
	}
	e.compose("up", "-d")

	// restart, stop, start, run --rm, config, pull, push.
	before := e.one("worker")
	e.compose("restart", "worker")
	if after := e.one("worker"); after.State.Status != "running" || after.State.StartedAt == before.State.StartedAt {
		t.Errorf("restart worker: %s, started %s (was %s)", after.State.Status, after.State.StartedAt, before.State.StartedAt)
	}
	e.compose("stop", "worker")
	if st := e.one("worker").State; st.Status != "exited" || st.ExitCode != 0 {
		t.Errorf("stop worker: %s %d", st.Status, st.ExitCode)
	}
	e.compose("start", "worker")
	if st := e.one("worker").State; st.Status != "running" {
		t.Errorf("start worker: %s", st.Status)
	}
	if got := e.compose("run", "--rm", "-T", "worker", "sh", "-c", "echo run $(nc redis 6379 </dev/null)"); !regexp.MustCompile(`^run \d+\n$`).MatchString(got) {
		t.Errorf("run --rm worker = %q", got)
	}
	// run and exec on a terminal, as a user types them.
	if out, code := e.composeTTY("echo tty-$((6*7)); exit 3\n", 3*time.Second, "run", "--rm", "worker", "sh"); code != 3 || !strings.Contains(out, "\ntty-42\n") {
		t.Errorf("run --rm worker sh on a terminal: exit %d\n%s", code, out)
	}
	if out, code := e.composeTTY("cat /data/marker; exit 4\n", 3*time.Second, "exec", "redis", "sh"); code != 4 || !strings.Contains(out, "\nkept\n") {
		t.Errorf("exec redis sh on a terminal: exit %d\n%s", code, out)
	}
	oneoff, err := e.api.ContainerList(ctxT(t), client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", "com.docker.compose.oneoff=True")})
	if err != nil || len(oneoff.Items) != 0 {
		t.Errorf("run --rm left %d one-off containers (%v)", len(oneoff.Items), err)
	}
	if got := strings.Fields(e.compose("config", "--services")); !slices.Equal(slices.Sorted(slices.Values(got)), []string{"redis", "setup", "web", "worker"}) {
		t.Errorf("config --services = %v", got)
	}
	e.compose("pull", "redis")
	e.compose("push", "web")
	if resp, err := http.Head("http://" + e.reg.Host + "/v2/tut/web/manifests/v1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("web's image in the registry after push: %v %v", resp, err)
	}

	if !e.c.v1 {
		composeV5Verbs(t, e, port)
	}

	// up attached: the services' output, and Ctrl-C stops the project.
	e.compose("stop")
	up := e.startBG("up")
	if !up.waitFor(60*time.Second, func(out string) bool { return regexp.MustCompile(`worker[-_]1 +\| worker got \d+`).MatchString(out) }) {
		t.Errorf("up attached shows no worker output:\n%s", up.output())
	}
	if !up.interrupt(60 * time.Second) {
		t.Errorf("up did not end within 60 s of Ctrl-C:\n%s", up.output())
		up.kill()
	}
	for _, c := range e.containers("") {
		if c.State == "running" {
			t.Errorf("after Ctrl-C of up, %v is still running", c.Names)
		}
	}

	// 9. down -v leaves no container, network or volume.
	e.compose("down", "-v")
	if cs, _ := e.api.ContainerList(ctxT(t), client.ContainerListOptions{All: true}); len(cs.Items) != 0 {
		t.Errorf("down -v left %d containers", len(cs.Items))
	}
	nets, _ := e.api.NetworkList(ctxT(t), client.NetworkListOptions{})
	for _, n := range nets.Items {
		if !slices.Contains([]string{"bridge", "host", "none"}, n.Name) {
			t.Errorf("down -v left network %s", n.Name)
		}
	}
	if vols, _ := e.api.VolumeList(ctxT(t), client.VolumeListOptions{}); len(vols.Items) != 0 {
		t.Errorf("down -v left %d volumes", len(vols.Items))
	}
	_ = webImage
}

// composeV5Verbs are the compose v5 verbs docker-compose 1.29 lacks or that
// the tutorial does not need: ls (a key-only label filter), wait (a wait
// without condition), port, top, images, cp, pause/unpause, kill, rm, and
// up --wait.
func composeV5Verbs(t *testing.T, e *composeEnv, port int) {
	if out := e.compose("ls"); !regexp.MustCompile(`(?m)^tut\s+running\(3\)`).MatchString(out) {
		t.Errorf("ls:\n%s", out)
	}
	if out := e.compose("ls", "--all", "--format", "json"); !strings.Contains(out, `"Name":"tut"`) || !strings.Contains(out, "exited(1)") {
		t.Errorf("ls --all --format json: %s", out)
	}
	if _, errOut, code := e.composeErr("wait", "setup"); code != 0 {
		t.Errorf("wait setup: exit %d, %s", code, errOut)
	}
	if got := e.compose("port", "web", "80"); got != fmt.Sprintf("0.0.0.0:%d\n", port) {
		t.Errorf("port web 80 = %q", got)
	}
	if out := e.compose("top", "redis"); !strings.Contains(out, "nc -ll -p 6379") {
		t.Errorf("top redis:\n%s", out)
	}
	if out := e.compose("images"); !strings.Contains(out, "tut/web") {
		t.Errorf("images:\n%s", out)
	}
	src := filepath.Join(t.TempDir(), "copied")
	writeFile(t, src, "copied in\n")
	e.compose("cp", src, "worker:/tmp/copied")
	if got := e.compose("exec", "-T", "worker", "cat", "/tmp/copied"); got != "copied in\n" {
		t.Errorf("cp into worker: %q", got)
	}
	dst := filepath.Join(t.TempDir(), "back")
	e.compose("cp", "worker:/tmp/copied", dst)
	if b, err := os.ReadFile(dst); err != nil || string(b) != "copied in\n" {
		t.Errorf("cp from worker: %q, %v", b, err)
	}
	e.compose("pause", "worker")
	if st := e.one("worker").State; !st.Paused {
		t.Errorf("pause worker: %+v", st)
	}
	e.compose("unpause", "worker")
	e.compose("kill", "worker")
	if st := e.one("worker").State; st.Running || st.ExitCode != 137 {
		t.Errorf("kill worker: %s %d", st.Status, st.ExitCode)
	}
	e.compose("rm", "-f", "worker")
	if n := len(e.containers("worker")); n != 0 {
		t.Errorf("rm -f worker left %d", n)
	}
	// up --wait returns once every service runs and redis is healthy.
	e.compose("up", "-d", "--wait")
	if st := e.one("worker").State; st.Status != "running" {
		t.Errorf("up --wait: worker %s", st.Status)
	}
	if h := e.one("redis").State.Health; h == nil || h.Status != "healthy" {
		t.Errorf("up --wait: redis %+v", h)
	}
}
