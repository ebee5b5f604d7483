package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestDockerTutorial runs the Docker tutorial's container commands with the
// stock docker CLI against berthd and checks what a user would see.
func TestDockerTutorial(t *testing.T) { tutorial(t, newDockerEnv(t)) }

// TestBerthTutorial runs the same commands with the berth CLI.
func TestBerthTutorial(t *testing.T) { tutorial(t, newBerthEnv(t)) }

func tutorial(t *testing.T, e *dockerEnv) {
	img := e.Image

	// run --rm: the output, the exit code, and nothing left behind.
	if got := e.cli("run", "--rm", img, "echo", "hi"); got != "hi\n" {
		t.Errorf("run --rm echo hi = %q", got)
	}
	if _, _, code := e.cliErr("run", "--rm", img, "sh", "-c", "echo out; echo err >&2; exit 3"); code != 3 {
		t.Errorf("run exit code = %d, want 3", code)
	}
	if got := e.cli("ps", "-aq"); got != "" {
		t.Errorf("ps -aq after --rm runs = %q", got)
	}

	// run -d, ps, logs, inspect --format, stop, start, restart, rm -f.
	id := strings.TrimSpace(e.cli("run", "-d", "--name", "web", "-e", "GREETING=hello", "--label", "tier=front", img,
		"sh", "-c", "echo $GREETING; echo to-stderr >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"))
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(id) {
		t.Fatalf("run -d printed %q", id)
	}
	out := e.cli("ps")
	if !strings.Contains(out, id[:12]) || !regexp.MustCompile(`Up (Less than a second|\d+ seconds?)`).MatchString(out) || !strings.Contains(out, "web") {
		t.Errorf("ps:\n%s", out)
	}
	if got := e.cli("ps", "--filter", "label=tier=front", "--format", "{{.Names}}"); got != "web\n" {
		t.Errorf("ps --filter label = %q", got)
	}
	if got := e.cli("ps", "--filter", "name=nomatch", "-q"); got != "" {
		t.Errorf("ps --filter name=nomatch = %q", got)
	}
	await(t, "the greeting in the log", func() bool { return strings.Contains(e.cli("logs", "web"), "hello") })
	if out, errOut, _ := e.cliErr("logs", "web"); out != "hello\n" || errOut != "to-stderr\n" {
		t.Errorf("logs: stdout %q stderr %q", out, errOut)
	}
	if out, errOut, _ := e.cliErr("logs", "--tail", "1", "--timestamps", "web"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z (hello|to-stderr)\n$`).MatchString(out + errOut) {
		t.Errorf("logs --tail 1 -t = %q + %q", out, errOut)
	}
	if got := e.cli("inspect", "--format", "{{.State.Status}} {{.State.Running}} {{.Name}} {{.RestartCount}} {{index .Config.Labels \"tier\"}}", "web"); got != "running true /web 0 front\n" {
		t.Errorf("inspect --format = %q", got)
	}
	var insp []map[string]any
	if err := json.Unmarshal([]byte(e.cli("inspect", "web")), &insp); err != nil || len(insp) != 1 {
		t.Fatalf("inspect: %v", err)
	}
	for _, k := range []string{"Id", "Created", "Path", "Args", "State", "Image", "LogPath", "HostConfig", "Config", "NetworkSettings", "Mounts", "RestartCount"} {
		if _, ok := insp[0][k]; !ok {
			t.Errorf("inspect lacks %s", k)
		}
	}
	if lp, _ := insp[0]["LogPath"].(string); !strings.HasSuffix(lp, id+"-json.log") {
		t.Errorf("LogPath %q", lp)
	}
	start := time.Now()
	e.cli("stop", "-t", "5", "web")
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("stop of a container that exits on TERM took %s", took)
	}
	if got := e.cli("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "web"); got != "exited 0\n" {
		t.Errorf("after stop: %q", got)
	}
	if out := e.cli("ps", "-a"); !strings.Contains(out, "Exited (0)") {
		t.Errorf("ps -a after stop:\n%s", out)
	}
	e.cli("start", "web")
	await(t, "the second run's greeting", func() bool { return strings.Count(e.cli("logs", "web"), "hello") == 2 })
	e.cli("restart", "-t", "1", "web")
	if got := e.cli("inspect", "--format", "{{.State.Status}}", "web"); got != "running\n" {
		t.Errorf("after restart: %q", got)
	}
	if _, errOut, code := e.cliErr("rm", "web"); code == 0 || !strings.Contains(errOut, `cannot remove container "/web": container is running`) {
		t.Errorf("rm of a running container: code %d, %q", code, errOut)
	}
	e.cli("rm", "-f", "web")
	// docker 28 says "Error: No such object", docker 29 "error: no such
	// object".
	if _, errOut, code := e.cliErr("inspect", "web"); code == 0 || !strings.Contains(strings.ToLower(errOut), "no such object: web") {
		t.Errorf("inspect after rm: %d %q", code, errOut)
	}
	// inspect without --type of an image reference (slashes in the name):
	// the CLI asks for a container first and takes the image on a 404.
	if got := e.cli("inspect", "--format", "{{.RepoTags}}", e.Image); !strings.Contains(got, e.Image) {
		t.Errorf("inspect %s: %q", e.Image, got)
	}

	// Names: a conflict names the holder; a bad name is refused.
	holder := strings.TrimSpace(e.cli("create", "--name", "taken", img, "true"))
	if _, errOut, code := e.cliErr("create", "--name", "taken", img, "true"); code == 0 || !strings.Contains(errOut, `Conflict. The container name "/taken" is already in use by container "`+holder+`"`) {
		t.Errorf("duplicate name: %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("create", "--name", "bad name!", img, "true"); code == 0 || !strings.Contains(errOut, "Invalid container name (bad name!)") {
		t.Errorf("bad name: %d %q", code, errOut)
	}
	e.cli("rename", "taken", "renamed")
	if got := e.cli("ps", "-a", "--format", "{{.Names}} {{.Status}}"); got != "renamed Created\n" {
		t.Errorf("after rename: %q", got)
	}
	e.cli("rm", "renamed")

	// stdin, wait, kill, pause.
	if out, code := e.cliIn("first line\nsecond\n", "run", "--rm", "-i", img, "sh", "-c", "read a; read b; echo got $a/$b"); out != "got first line/second\n" || code != 0 {
		t.Errorf("run -i: %q %d", out, code)
	}
	e.cli("run", "-d", "--name", "sleeper", img, "sleep", "300")
	e.cli("pause", "sleeper")
	if got := e.cli("ps", "--format", "{{.Status}}", "--filter", "name=sleeper"); !strings.Contains(got, "(Paused)") {
		t.Errorf("ps of a paused container: %q", got)
	}
	if got := e.cli("ps", "-q", "--filter", "status=paused"); strings.TrimSpace(got) == "" {
		t.Error("status=paused filter found nothing")
	}
	e.cli("unpause", "sleeper")
	e.cli("kill", "sleeper")
	if got := e.cli("wait", "sleeper"); got != "137\n" {
		t.Errorf("wait after kill = %q", got)
	}
	if got := e.cli("ps", "-aq", "--filter", "exited=137"); strings.TrimSpace(got) == "" {
		t.Error("exited=137 filter found nothing")
	}
	e.cli("rm", "sleeper")
}

// TestDockerRunOptions: the run flags reach the container.
func TestDockerRunOptions(t *testing.T) {
	e := newDockerEnv(t)
	img := e.Image
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"user", []string{"--user", "33:33", img, "id"}, "uid=33(www-data) gid=33(www-data) groups=33(www-data)\n"},
		{"workdir", []string{"--workdir", "/new/dir", img, "pwd"}, "/new/dir\n"},
		{"hostname", []string{"--hostname", "h1", img, "hostname"}, "h1\n"},
		{"entrypoint", []string{"--entrypoint", "echo", img, "a", "b"}, "a b\n"},
		{"env", []string{"-e", "A=1", "--env", "B=2", img, "sh", "-c", "echo $A$B"}, "12\n"},
		{"add-host", []string{"--add-host", "db.local:10.1.2.3", img, "grep", "db.local", "/etc/hosts"}, "10.1.2.3\tdb.local\n"},
		{"dns", []string{"--dns", "10.9.9.9", "--dns-search", "example.org", img, "cat", "/etc/resolv.conf"}, "search example.org\nnameserver 10.9.9.9\n"},
		{"init", []string{"--init", img, "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '"}, "/sbin/docker-init -- sh -c cat /proc/1/cmdline | tr '\\0' ' ' "},
		{"read-only", []string{"--read-only", "--tmpfs", "/scratch", img, "sh", "-c", "touch /x 2>/dev/null || echo ro; touch /scratch/y && echo tmpfs"}, "ro\ntmpfs\n"},
		{"ulimit", []string{"--ulimit", "nofile=123:456", img, "sh", "-c", "ulimit -n; ulimit -Hn"}, "123\n456\n"},
		{"shm-size", []string{"--shm-size", "16m", img, "sh", "-c", "df -k /dev/shm | tail -1 | awk '{print $2}'"}, "16384\n"},
		{"cap-drop", []string{"--cap-drop", "ALL", img, "sh", "-c", "grep CapEff /proc/self/status"}, "CapEff:\t0000000000000000\n"},
		{"cap-add", []string{"--cap-drop", "ALL", "--cap-add", "NET_ADMIN", img, "sh", "-c", "grep CapEff /proc/self/status"}, "CapEff:\t0000000000001000\n"},
		{"no-new-privileges", []string{"--security-opt", "no-new-privileges", img, "sh", "-c", "grep NoNewPrivs /proc/self/status"}, "NoNewPrivs:\t1\n"},
		{"seccomp default", []string{img, "sh", "-c", "grep Seccomp: /proc/self/status"}, "Seccomp:\t2\n"},
		{"seccomp unconfined", []string{"--security-opt", "seccomp=unconfined", img, "sh", "-c", "grep Seccomp: /proc/self/status"}, "Seccomp:\t0\n"},
		{"privileged", []string{"--privileged", img, "sh", "-c", "grep Seccomp: /proc/self/status; test -e /dev/kmsg && echo dev"}, "Seccomp:\t0\ndev\n"},
		{"network none", []string{"--network", "none", img, "sh", "-c", "ls /sys/class/net"}, "lo\n"},
		{"memory", []string{"--memory", "64m", img, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"}, "67108864\n"},
		{"pids-limit", []string{"--pids-limit", "42", img, "sh", "-c", "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max"}, "42\n"},
		{"stop-signal recorded", []string{"--stop-signal", "SIGUSR1", "--stop-timeout", "7", img, "true"}, ""},
		{"group-add", []string{"--user", "nobody", "--group-add", "www-data", "--group-add", "1234", img, "id", "-G"}, "65534 33 1234\n"},
		{"device", []string{"--device", "/dev/null:/dev/mynull:rw", img, "sh", "-c", "stat -c '%t,%T' /dev/mynull; echo x > /dev/mynull && echo written"}, "1,3\nwritten\n"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := e.cliErr(append([]string{"run", "--rm"}, c.args...)...)
			if code != 0 || out != c.want {
				t.Errorf("run %v: exit %d, stdout %q (want %q), stderr %q", c.args, code, out, c.want, errOut)
			}
		})
	}
	if host, _ := os.Hostname(); host != "" {
		if got := e.cli("run", "--rm", "--network", "host", img, "hostname"); got != host+"\n" {
			t.Errorf("--network host hostname = %q, want %q", got, host)
		}
		// --uts host on the default network: the host's UTS namespace,
		// the container's own network namespace.
		hostUTS, _ := os.Readlink("/proc/self/ns/uts")
		hostNet, _ := os.Readlink("/proc/self/ns/net")
		got := e.cli("run", "--rm", "--uts", "host", img, "sh", "-c", "hostname; readlink /proc/self/ns/uts; readlink /proc/self/ns/net")
		if want := host + "\n" + hostUTS + "\n"; !strings.HasPrefix(got, want) || strings.HasSuffix(got, hostNet+"\n") {
			t.Errorf("--uts host: %q, want %q then a network namespace other than %s", got, want, hostNet)
		}
	}
	if _, errOut, code := e.cliErr("run", "--rm", "--uts", "host", "--hostname", "h", img, "true"); code != 125 || !strings.Contains(errOut, "conflicting options: hostname and the UTS mode") {
		t.Errorf("--uts host --hostname: %d %q", code, errOut)
	}
	// Swappiness and the OOM killer switch (cgroup v1 only); a block I/O
	// weight the host cannot apply is discarded with dockerd's warning.
	if _, err := os.Stat("/sys/fs/cgroup/memory/memory.swappiness"); err == nil {
		if got := e.cli("run", "--rm", "-m", "64m", "--memory-swappiness", "30", "--oom-kill-disable", img, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.swappiness; grep oom_kill_disable /sys/fs/cgroup/memory/memory.oom_control"); got != "30\noom_kill_disable 1\n" {
			t.Errorf("--memory-swappiness 30 --oom-kill-disable: %q", got)
		}
	}
	_, errBlkio := os.Stat("/sys/fs/cgroup/blkio/blkio.weight")
	_, errBFQ := os.Stat("/sys/fs/cgroup/blkio/blkio.bfq.weight")
	if _, errV2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); errBlkio != nil && errBFQ != nil && errV2 != nil {
		if _, errOut, code := e.cliErr("run", "--rm", "--blkio-weight", "300", img, "true"); code != 0 || !strings.Contains(errOut, "Block I/O weight or the cgroup is not mounted. Weight discarded.") {
			t.Errorf("--blkio-weight without blkio.weight: %d %q", code, errOut)
		}
	}
	// A user or group the image lacks is the request's fault, and no
	// reason for the CLI to pull the image.
	for _, c := range []struct{ flag, want string }{
		{"--user=nosuch", `no user "nosuch" in the image's /etc/passwd`},
		{"--group-add=nosuch", "Unable to find group nosuch: no matching entries in group file"},
	} {
		_, errOut, code := e.cliErr("run", "--rm", c.flag, img, "true")
		if code != 125 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "Unable to find image") {
			t.Errorf("run %s: exit %d, %q; want %q", c.flag, code, errOut, c.want)
		}
	}
	// The image's STOPSIGNAL and --stop-signal are what stop sends.
	e.cli("run", "-d", "--name", "usr1", "--stop-signal", "USR1", img, "sh", "-c", "trap 'echo got-usr1; exit 7' USR1; echo ready; while true; do sleep 0.1; done")
	// PID 1 ignores a signal it has no handler for yet: stop once the
	// trap is set.
	if !waitFor(10*time.Second, func() bool { return e.cli("logs", "usr1") == "ready\n" }) {
		t.Errorf("usr1 never became ready")
	}
	e.cli("stop", "-t", "10", "usr1")
	if got := e.cli("inspect", "--format", "{{.State.ExitCode}} {{.Config.StopSignal}}", "usr1"); got != "7 USR1\n" {
		t.Errorf("stop with --stop-signal: %q", got)
	}
	// --network container:<name> shares the network namespace and files.
	e.cli("run", "-d", "--name", "netowner", "--hostname", "owner", img, "sleep", "300")
	if got := e.cli("run", "--rm", "--network", "container:netowner", img, "hostname"); got != "owner\n" {
		t.Errorf("container network mode hostname = %q", got)
	}
	pid := strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Pid}}", "netowner"))
	ownerNS, err := os.Readlink("/proc/" + pid + "/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if got := e.cli("run", "--rm", "--network", "container:netowner", img, "readlink", "/proc/self/ns/net"); got != ownerNS+"\n" {
		t.Errorf("container network mode netns %q, owner's %q", got, ownerNS)
	}
	// --ipc container:<name> shares a shareable donor's IPC namespace
	// and /dev/shm; a private donor, a stopped or missing one are
	// refused with dockerd's messages (and no pull of the image).
	e.cli("run", "-d", "--name", "ipcdonor", "--ipc", "shareable", img, "sh", "-c", "echo shared > /dev/shm/x; sleep 300")
	pid = strings.TrimSpace(e.cli("inspect", "--format", "{{.State.Pid}}", "ipcdonor"))
	donorNS, err := os.Readlink("/proc/" + pid + "/ns/ipc")
	if err != nil {
		t.Fatal(err)
	}
	await(t, "the donor's /dev/shm file", func() bool {
		_, _, code := e.cliErr("exec", "ipcdonor", "test", "-s", "/dev/shm/x")
		return code == 0
	})
	if got := e.cli("run", "--rm", "--ipc", "container:ipcdonor", img, "sh", "-c", "readlink /proc/self/ns/ipc; cat /dev/shm/x"); got != donorNS+"\nshared\n" {
		t.Errorf("--ipc container:ipcdonor: %q, want the donor's %s and its /dev/shm", got, donorNS)
	}
	e.cli("create", "--name", "stoppeddonor", "--ipc", "shareable", img, "true")
	for _, c := range []struct{ ref, want string }{
		{"netowner", "container netowner: non-shareable IPC (hint: use IpcMode:shareable for the donor container)"},
		{"stoppeddonor", "container stoppeddonor is not running"},
		{"nosuchdonor", "No such container: nosuchdonor"},
	} {
		_, errOut, code := e.cliErr("run", "--rm", "--ipc", "container:"+c.ref, img, "true")
		if code != 125 || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "Unable to find image") {
			t.Errorf("--ipc container:%s: exit %d, %q; want %q", c.ref, code, errOut, c.want)
		}
	}
	e.cli("rm", "-f", "netowner", "usr1", "ipcdonor", "stoppeddonor")
}

// TestDockerTTY: run -it under a pseudo terminal.
func TestDockerTTY(t *testing.T) {
	e := newDockerEnv(t)
	out, code := e.tty("", 3*time.Second, "run", "--rm", "-it", e.Image, "sh", "-c", "tty; echo $TERM; exit 4")
	if code != 4 || !strings.Contains(out, "/dev/pts/0\r\n") || !strings.Contains(out, "xterm\r\n") {
		t.Errorf("run -it: exit %d, terminal:\n%q", code, out)
	}
	out, code = e.tty("echo typed-$((40+2))\nexit 6\n", 5*time.Second, "run", "--rm", "-it", e.Image, "sh")
	if code != 6 || !strings.Contains(out, "typed-42") {
		t.Errorf("interactive shell: exit %d, terminal:\n%q", code, out)
	}
}

// TestDockerVolumes: named and anonymous volumes, copy-up, binds, --mount,
// in-use protection and the bad inputs docker refuses.
func TestDockerVolumes(t *testing.T) {
	e := newDockerEnv(t)
	img := e.Image
	e.cli("volume", "create", "data")
	e.cli("run", "--rm", "-v", "data:/data", img, "sh", "-c", "echo kept > /data/f")
	if got := e.cli("run", "--rm", "-v", "data:/data:ro", img, "cat", "/data/f"); got != "kept\n" {
		t.Errorf("named volume content = %q", got)
	}
	if _, _, code := e.cliErr("run", "--rm", "-v", "data:/data:ro", img, "touch", "/data/g"); code == 0 {
		t.Error("wrote to a read-only volume")
	}
	// Copy-up: an empty volume mounted on /etc gets the image's files.
	if got := e.cli("run", "--rm", "-v", "etcvol:/etc", img, "sh", "-c", "grep -c root /etc/passwd"); got != "1\n" {
		t.Errorf("copy-up into a new volume: %q", got)
	}
	if got := e.cli("volume", "ls", "-q"); !strings.Contains(got, "data\n") || !strings.Contains(got, "etcvol\n") {
		t.Errorf("volume ls = %q", got)
	}
	// In use by a stopped container: refused without force.
	e.cli("create", "--name", "user", "-v", "data:/data", img, "true")
	if _, errOut, code := e.cliErr("volume", "rm", "data"); code == 0 || !strings.Contains(errOut, "volume is in use") {
		t.Errorf("rm of a volume in use: %d %q", code, errOut)
	}
	e.cli("rm", "user")
	e.cli("volume", "rm", "data")
	if _, errOut, code := e.cliErr("volume", "inspect", "data"); code == 0 || !strings.Contains(errOut, "no such volume") {
		t.Errorf("inspect of a removed volume: %d %q", code, errOut)
	}
	// Anonymous volumes: -v /path; rm -v removes them, rm keeps them.
	id := strings.TrimSpace(e.cli("create", "-v", "/anon", img, "true"))
	var mounts []container.MountPoint
	json.Unmarshal([]byte(e.cli("inspect", "--format", "{{json .Mounts}}", id)), &mounts)
	if len(mounts) != 1 || mounts[0].Type != "volume" || mounts[0].Destination != "/anon" || len(mounts[0].Name) != 64 {
		t.Fatalf("anonymous volume mount: %+v", mounts)
	}
	e.cli("rm", "-v", id)
	if got := e.cli("volume", "ls", "-q"); strings.Contains(got, mounts[0].Name) {
		t.Errorf("rm -v left the anonymous volume %s", mounts[0].Name)
	}
	// --rm removes anonymous volumes too.
	before := e.cli("volume", "ls", "-q")
	e.cli("run", "--rm", "-v", "/scratch", img, "true")
	if after := e.cli("volume", "ls", "-q"); after != before {
		t.Errorf("run --rm -v /scratch left a volume: %q -> %q", before, after)
	}
	// Binds: ro/rw, a missing source created by -v, refused by --mount.
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "host.txt"), []byte("from host\n"), 0o644)
	if got := e.cli("run", "--rm", "-v", dir+":/mnt:ro", img, "cat", "/mnt/host.txt"); got != "from host\n" {
		t.Errorf("bind ro read = %q", got)
	}
	e.cli("run", "--rm", "-v", dir+":/mnt", img, "sh", "-c", "echo back > /mnt/out.txt")
	if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "back\n" {
		t.Errorf("bind rw write = %q", b)
	}
	missing := filepath.Join(t.TempDir(), "made", "by", "docker")
	e.cli("run", "--rm", "-v", missing+":/m", img, "true")
	if fi, err := os.Stat(missing); err != nil || !fi.IsDir() {
		t.Errorf("-v did not create the missing host directory: %v", err)
	}
	gone := filepath.Join(t.TempDir(), "absent")
	if _, errOut, code := e.cliErr("run", "--rm", "--mount", "type=bind,source="+gone+",target=/m", img, "true"); code == 0 || !strings.Contains(errOut, "bind source path does not exist: "+gone) {
		t.Errorf("--mount of a missing bind source: %d %q", code, errOut)
	}
	if got := e.cli("run", "--rm", "--mount", "type=tmpfs,target=/t,tmpfs-size=1m", img, "sh", "-c", "df -k /t | tail -1 | awk '{print $2}'"); got != "1024\n" {
		t.Errorf("--mount tmpfs size = %q", got)
	}
	if got := e.cli("run", "--rm", "--mount", "type=volume,source=mvol,target=/v", img, "sh", "-c", "echo x > /v/x && cat /v/x"); got != "x\n" {
		t.Errorf("--mount volume = %q", got)
	}
	// A read-only bind is read-only all the way down (dockerd 25+),
	// unless bind-recursive=writable; a slave bind of a private source
	// is refused.
	if recursiveRO() {
		sub := filepath.Join(dir, "sub")
		os.Mkdir(sub, 0o755)
		if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, ""); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { syscall.Unmount(sub, syscall.MNT_DETACH) })
		if got := e.cli("run", "--rm", "-v", dir+":/mnt:ro", img, "sh", "-c", "touch /mnt/sub/x 2>/dev/null && echo wrote || echo refused"); got != "refused\n" {
			t.Errorf("write below a read-only bind's submount: %q", got)
		}
		if got := e.cli("run", "--rm", "--mount", "type=bind,source="+dir+",target=/mnt,readonly,bind-recursive=writable", img, "sh", "-c", "touch /mnt/sub/x && echo wrote"); got != "wrote\n" {
			t.Errorf("bind-recursive=writable: %q", got)
		}
		syscall.Unmount(sub, syscall.MNT_DETACH)
	}
	private := t.TempDir()
	if err := syscall.Mount(private, private, "", syscall.MS_BIND, ""); err == nil {
		syscall.Mount("", private, "", syscall.MS_PRIVATE, "")
		if _, errOut, code := e.cliErr("run", "--rm", "-v", private+":/mnt:slave", img, "true"); code != 125 || !strings.Contains(errOut, "neither shared nor slave") {
			t.Errorf("slave bind of a private source: %d %q", code, errOut)
		}
		syscall.Unmount(private, syscall.MNT_DETACH)
	}
	// --mount type=image: the image's files, read-only, narrowed by
	// image-subpath; its view goes with the container.
	if got := e.cli("run", "--rm", "--mount", "type=image,source="+img+",target=/img,image-subpath=etc", img, "sh", "-c", "cat /img/hostname >/dev/null && grep -c root /img/passwd; touch /img/x 2>/dev/null || echo read-only"); got != "1\nread-only\n" {
		t.Errorf("--mount type=image: %q", got)
	}
	if _, errOut, code := e.cliErr("run", "--rm", "--mount", "type=image,source="+img+",target=/img,image-subpath=nope", img, "true"); code != 125 || !strings.Contains(errOut, "cannot access path nope in image") {
		t.Errorf("--mount type=image with a missing sub-path: %d %q", code, errOut)
	}
	// --volumes-from: a data container's anonymous volume and bind, ro
	// applied to both; rm -v of the consumer keeps what the data
	// container still uses; a missing container is a 404.
	e.cli("create", "--name", "store", "-v", "/shared", "-v", dir+":/hostdir", img, "true")
	e.cli("run", "--rm", "--volumes-from", "store", img, "sh", "-c", "echo one > /shared/f")
	if got := e.cli("run", "--name", "reader", "--volumes-from", "store:ro", img, "sh", "-c", "cat /shared/f /hostdir/host.txt; touch /shared/g 2>/dev/null || echo read-only"); got != "one\nfrom host\nread-only\n" {
		t.Errorf("--volumes-from store:ro = %q", got)
	}
	var storeMounts []container.MountPoint
	json.Unmarshal([]byte(e.cli("inspect", "--format", "{{json .Mounts}}", "store")), &storeMounts)
	e.cli("rm", "-v", "reader")
	var anon string
	for _, m := range storeMounts {
		if m.Destination == "/shared" {
			anon = m.Name
		}
	}
	if anon == "" || !strings.Contains(e.cli("volume", "ls", "-q"), anon) {
		t.Errorf("rm -v of a --volumes-from consumer removed the data container's volume %q (mounts %+v)", anon, storeMounts)
	}
	e.cli("rm", "-v", "store")
	if anon != "" && strings.Contains(e.cli("volume", "ls", "-q"), anon) {
		t.Errorf("rm -v of the data container left its volume %s", anon)
	}
	if _, errOut, code := e.cliErr("run", "--rm", "--volumes-from", "nosuchstore", img, "true"); code != 125 || !strings.Contains(errOut, "No such container: nosuchstore") {
		t.Errorf("--volumes-from a missing container: %d %q", code, errOut)
	}
	// Bad input: a relative host path, a bad volume name, a bad mode.
	for _, c := range []struct {
		arg, want string
	}{
		{"foo/bar:/x", `"foo/bar" includes invalid characters for a local volume name`},
		{"x:/y:zz", "invalid mode: zz"},
		{"vol:relative", "invalid mount path: 'relative' mount path must be absolute"},
	} {
		if _, errOut, code := e.cliErr("run", "--rm", "-v", c.arg, img, "true"); code != 125 || !strings.Contains(errOut, c.want) {
			t.Errorf("-v %s: exit %d, %q; want %q", c.arg, code, errOut, c.want)
		}
	}
	if _, errOut, code := e.cliErr("volume", "create", "bad/name"); code == 0 || !strings.Contains(errOut, "includes invalid characters") {
		t.Errorf("volume create bad/name: %d %q", code, errOut)
	}
}

// TestDockerRestartPolicy: on-failure with a maximum, Docker's backoff
// between attempts, and a stop by the user ends unless-stopped's restarts.
func TestDockerRestartPolicy(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "-d", "--name", "flaky", "--restart", "on-failure:3", e.Image, "sh", "-c", "cut -d' ' -f1 /proc/uptime; exit 2")
	await(t, "three restarts", func() bool {
		return e.cli("inspect", "--format", "{{.RestartCount}} {{.State.Status}}", "flaky") == "3 exited\n"
	})
	time.Sleep(2 * time.Second)
	if got := e.cli("inspect", "--format", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}", "flaky"); got != "3 exited 2\n" {
		t.Errorf("after the retries: %q", got)
	}
	// 4 runs with 100, 200, 400 ms of backoff between them.
	var times []float64
	for _, l := range strings.Fields(e.cli("logs", "flaky")) {
		f, _ := strconv.ParseFloat(l, 64)
		times = append(times, f)
	}
	if len(times) != 4 {
		t.Fatalf("runs logged: %v", times)
	}
	for i, min := range []float64{0.1, 0.2, 0.4} {
		if gap := times[i+1] - times[i]; gap < min {
			t.Errorf("gap before run %d: %.3fs, want at least %.1fs", i+2, gap, min)
		}
	}
	e.cli("run", "-d", "--name", "always", "--restart", "unless-stopped", e.Image, "sleep", "300")
	e.cli("stop", "-t", "0", "always")
	time.Sleep(time.Second)
	if got := e.cli("inspect", "--format", "{{.State.Status}} {{.RestartCount}}", "always"); got != "exited 0\n" {
		t.Errorf("unless-stopped after stop: %q", got)
	}
}

// TestDockerNameRace: 50 creations with one name at once give exactly one
// container; the others get docker's conflict.
func TestDockerNameRace(t *testing.T) {
	e := newDockerEnv(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ok, conflicts int
	var other []error
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.api.ContainerCreate(t.Context(), client.ContainerCreateOptions{Name: "contested", Config: &container.Config{Image: e.Image, Cmd: []string{"true"}}})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case strings.Contains(err.Error(), `The container name "/contested" is already in use`):
				conflicts++
			default:
				other = append(other, err)
			}
		}()
	}
	wg.Wait()
	if ok != 1 || conflicts != 49 || len(other) > 0 {
		t.Errorf("50 creates of one name: %d created, %d conflicts, other errors %v", ok, conflicts, other)
	}
	if got := e.cli("ps", "-aq", "--filter", "name=^contested$"); len(strings.Fields(got)) != 1 {
		t.Errorf("containers named contested: %q", got)
	}
}

// TestDockerEvents: docker events reports a container's life.
func TestDockerEvents(t *testing.T) {
	e := newDockerEnv(t)
	since := strconv.FormatInt(time.Now().Add(-time.Second).Unix(), 10)
	if _, _, code := e.cliErr("run", "--name", "evt", e.Image, "sh", "-c", "exit 5"); code != 5 {
		t.Errorf("run exit code %d, want 5", code)
	}
	e.cli("rm", "evt")
	until := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
	out := e.cli("events", "--since", since, "--until", until, "--filter", "container=evt", "--format", "{{.Type}} {{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.exitCode}}")
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.TrimSpace(strings.TrimSuffix(l, " <no value>")))
	}
	want := []string{"container create evt", "container attach evt", "container start evt", "container die evt 5", "container destroy evt"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestDockerBadRequests: malformed bodies, unknown fields, wrong types,
// unknown objects and bad parameters get docker's status codes and
// messages.
func TestDockerBadRequests(t *testing.T) {
	e := newDockerEnv(t)
	for _, c := range []struct {
		method, path, body string
		status             int
		want               string
	}{
		{"POST", "/containers/create", `{"Image":`, 400, "invalid JSON: unexpected EOF"},
		{"POST", "/containers/create", `{"Image":"x","Bogus":1}`, 400, `invalid JSON: json: unknown field \"Bogus\"`},
		{"POST", "/containers/create", `{"Image":"x","Cmd":"not-a-list"}`, 400, "invalid JSON: json: cannot unmarshal string"},
		{"POST", "/containers/create", ``, 400, "config cannot be empty in order to create a container"},
		{"POST", "/containers/create", `{"Image":"no-such-image:v1"}`, 404, "No such image: no-such-image:v1"},
		{"POST", "/containers/create?name=a/b", `{"Image":"` + e.Image + `"}`, 400, "Invalid container name (a/b)"},
		{"POST", "/containers/create", `{"Image":"` + e.Image + `","HostConfig":{"Binds":["rel/path:/x"]}}`, 400, "includes invalid characters for a local volume name"},
		{"POST", "/containers/create", `{"Image":"` + e.Image + `","HostConfig":{"RestartPolicy":{"Name":"sometimes"}}}`, 400, "invalid restart policy"},
		{"POST", "/containers/create", `{"Image":"` + e.Image + `","HostConfig":{"Memory":1024}}`, 400, "Minimum memory limit allowed is 6MB"},
		{"GET", "/containers/nope/json", "", 404, "No such container: nope"},
		{"POST", "/containers/nope/start", "", 404, "No such container: nope"},
		{"POST", "/containers/nope/wait", "", 404, "No such container: nope"},
		{"GET", "/containers/json?filters=" + `{"bogus":["x"]}`, "", 400, "invalid filter 'bogus'"},
		{"GET", "/containers/json?filters=" + `{"status":["sleeping"]}`, "", 400, "invalid filter 'status=sleeping'"},
		{"GET", "/volumes/nope", "", 404, "get nope: no such volume"},
		{"POST", "/volumes/create", `{"Name":"a/b"}`, 400, "includes invalid characters"},
		{"POST", "/containers/create", `{"Image":"` + e.Image + `","HostConfig":{"AutoRemove":true,"RestartPolicy":{"Name":"always"}}}`, 400, "can't create 'AutoRemove' container with restart policy"},
		{"POST", "/containers/create", `{"Image":"` + e.Image + `","HostConfig":{"Devices":[{"PathOnHost":"/dev/nosuchdevice","PathInContainer":"/dev/x","CgroupPermissions":"rwm"}]}}`, 400, `error gathering device information while adding custom device \"/dev/nosuchdevice\": no such file or directory`},
	} {
		resp := e.d.rawRequest(t, c.method, "/v1.50"+c.path, c.body)
		if resp.status != c.status || !strings.Contains(resp.body, c.want) {
			t.Errorf("%s %s %s: %d %s; want %d with %q", c.method, c.path, c.body, resp.status, resp.body, c.status, c.want)
		}
	}
	// Booleans as docker-py sends them.
	e.cli("create", "--name", "b1", e.Image, "true")
	if resp := e.d.rawRequest(t, "GET", "/containers/json?all=True", ""); !strings.Contains(resp.body, "/b1") {
		t.Errorf("all=True did not list stopped containers: %s", resp.body)
	}
	if resp := e.d.rawRequest(t, "GET", "/containers/json?all=False", ""); strings.Contains(resp.body, "/b1") {
		t.Errorf("all=False listed stopped containers: %s", resp.body)
	}
	if resp := e.d.rawRequest(t, "DELETE", "/containers/b1?force=True&v=True", ""); resp.status != 204 {
		t.Errorf("DELETE force=True: %d %s", resp.status, resp.body)
	}
	// Unversioned and versioned routes, and /_ping's headers.
	if resp := e.d.rawRequest(t, "GET", "/containers/json", ""); resp.status != 200 {
		t.Errorf("unversioned list: %d", resp.status)
	}
	if resp := e.d.rawRequest(t, "GET", "/v1.40/containers/json", ""); resp.status != 200 {
		t.Errorf("v1.40 list: %d", resp.status)
	}
	resp := e.d.rawRequest(t, "GET", "/_ping", "")
	for h, want := range map[string]string{"Api-Version": "1.57", "Ostype": "linux", "Docker-Experimental": "false", "Swarm": "inactive"} {
		if got := resp.header.Get(h); got != want {
			t.Errorf("/_ping %s = %q, want %q", h, got, want)
		}
	}
}

// TestDockerWaitHeadersFirst: POST /wait answers its 200 headers at once,
// before the container even starts (the CLI sends it before start).
func TestDockerWaitHeadersFirst(t *testing.T) {
	e := newDockerEnv(t)
	id := strings.TrimSpace(e.cli("create", e.Image, "sh", "-c", "exit 9"))
	conn := e.d.dialDocker(t)
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1.50/containers/%s/wait?condition=next-exit HTTP/1.1\r\nHost: docker\r\nContent-Length: 0\r\n\r\n", id)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil || !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200 OK") {
		t.Fatalf("wait headers before start: %q %v", buf[:n], err)
	}
	e.cli("start", id)
	conn.SetReadDeadline(time.Now().Add(20 * time.Second))
	rest := string(buf[:n])
	for !strings.Contains(rest, `"StatusCode":9`) {
		m, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("wait body: %q %v", rest, err)
		}
		rest += string(buf[:m])
	}
}

// TestDockerAttachAndFollow: docker attach to a running terminal
// container and its detach keys, start -a of a stopped container, logs -f
// until the container exits.
func TestDockerAttachAndFollow(t *testing.T) {
	e := newDockerEnv(t)
	img := e.Image
	e.cli("run", "-dit", "--name", "shell", img, "sh")
	// Type a command, then ctrl-p ctrl-q: the CLI leaves, the shell stays.
	out, code := e.ttyParts([]string{"echo typed-$((6*7))\n", "\x10\x11"}, 3*time.Second, "attach", "shell")
	if !strings.Contains(out, "typed-42") || !strings.Contains(out, "read escape sequence") {
		t.Errorf("attach: exit %d, terminal:\n%q", code, out)
	}
	if got := e.cli("inspect", "--format", "{{.State.Running}}", "shell"); got != "true\n" {
		t.Errorf("after detaching: running %q", got)
	}
	e.cli("rm", "-f", "shell")

	// start -a: the new run's output, its exit code.
	e.cli("create", "--name", "again", img, "sh", "-c", "echo run-output; exit 3")
	for i := range 2 {
		out, _, code := e.cliErr("start", "-a", "again")
		if out != "run-output\n" || code != 3 {
			t.Errorf("start -a, run %d: %q exit %d", i+1, out, code)
		}
	}

	// logs -f follows until the exit.
	e.cli("run", "-d", "--name", "ticker", img, "sh", "-c", "for i in 1 2 3 4 5; do echo tick $i; sleep 0.3; done")
	start := time.Now()
	if got := e.cli("logs", "-f", "ticker"); got != "tick 1\ntick 2\ntick 3\ntick 4\ntick 5\n" {
		t.Errorf("logs -f = %q", got)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("logs -f returned after %s, before the container ended", took)
	}
	// attach to a running container that then exits: its exit code.
	e.cli("run", "-d", "--name", "ending", img, "sh", "-c", "sleep 1; echo bye; exit 9")
	if out, _, code := e.cliErr("attach", "ending"); out != "bye\n" || code != 9 {
		t.Errorf("attach until exit: %q %d", out, code)
	}
}

// recursiveRO says whether the kernel makes mounts recursively read-only
// (5.12).
func recursiveRO() bool {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return false
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	var major, minor int
	fmt.Sscanf(string(b), "%d.%d", &major, &minor)
	return major > 5 || (major == 5 && minor >= 12)
}

// TestDockerCreatedNetworking: a created container's endpoint reads empty
// until its first start, as with dockerd (Berth attaches it during the
// creation); a network connected before the start is there after it; the
// start takes the attachment made at the creation.
func TestDockerCreatedNetworking(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("network", "create", "extra")
	e.cli("create", "--name", "early", e.Image, "sleep", "300")
	if got := e.cli("inspect", "--format", "{{.NetworkSettings.IPAddress}}|{{.NetworkSettings.SandboxKey}}|{{range .NetworkSettings.Networks}}{{.IPAddress}}{{.EndpointID}}{{end}}", "early"); got != "||\n" {
		t.Errorf("created container's network settings: %q, want empty", got)
	}
	e.cli("network", "connect", "extra", "early")
	e.cli("start", "early")
	ips := e.cli("inspect", "--format", "{{range $n, $s := .NetworkSettings.Networks}}{{$n}}={{$s.IPAddress}} {{end}}", "early")
	addrs := e.cli("exec", "early", "sh", "-c", "ip -4 -o addr show | awk '{print $4}'")
	for _, f := range strings.Fields(ips) {
		name, ip, _ := strings.Cut(f, "=")
		if ip == "" || !strings.Contains(addrs, ip+"/") {
			t.Errorf("network %s: address %q not on the container's interfaces %q", name, ip, addrs)
		}
	}
	if n := len(strings.Fields(ips)); n != 2 {
		t.Errorf("networks after the start: %q", ips)
	}
	e.cli("rm", "-f", "early")
	e.cli("network", "rm", "extra")
}
