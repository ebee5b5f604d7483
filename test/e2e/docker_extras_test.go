package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
)

// TestDockerStatsTopUpdate: docker stats --no-stream shows what the
// container uses, docker top its processes, docker update changes its
// cgroup while it runs.
func TestDockerStatsTopUpdate(t *testing.T) {
	e := newDockerEnv(t)
	// A busy loop (one CPU's worth), 16 MiB of memory held in /dev/shm's
	// tmpfs (charged to the container), a few processes.
	e.cli("run", "-d", "--name", "busy", "-m", "64m", e.Image, "sh", "-c",
		"head -c 16777216 /dev/zero > /dev/shm/fill; sleep 1000 & while :; do :; done")
	await(t, "the memory to be filled", func() bool {
		_, _, code := e.cliErr("exec", "busy", "sh", "-c", "test $(stat -c %s /dev/shm/fill) = 16777216")
		return code == 0
	})

	out := e.cli("stats", "--no-stream", "busy")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "CONTAINER ID") {
		t.Fatalf("stats --no-stream:\n%s", out)
	}
	f := regexp.MustCompile(`^([0-9a-f]{12})\s+busy\s+([\d.]+)%\s+([\d.]+)MiB / 64MiB\s+([\d.]+)%\s+\S+ / \S+\s+\S+ / \S+\s+(\d+)$`).FindStringSubmatch(lines[1])
	if f == nil {
		t.Fatalf("stats --no-stream row: %q", lines[1])
	}
	cpu, _ := strconv.ParseFloat(f[2], 64)
	mem, _ := strconv.ParseFloat(f[3], 64)
	pids, _ := strconv.Atoi(f[5])
	// The loop takes a CPU when the machine lets it (a busy shared machine
	// gives it less): clearly above an idle container's 0.00%, never more
	// than the machine's CPUs.
	if cpu < 2 || cpu > float64(goruntime.NumCPU())*100+10 {
		t.Errorf("CPU %% = %v, want a busy loop's: %q", cpu, lines[1])
	}
	if mem < 15 || mem > 40 {
		t.Errorf("memory %v MiB, want the 16 MiB held (and a little more): %q", mem, lines[1])
	}
	if pids < 2 {
		t.Errorf("PIDs %d: %q", pids, lines[1])
	}
	e.cli("run", "-d", "--name", "idle", e.Image, "sleep", "1000")
	// A sleep takes no CPU; the first sample may still see the last of
	// its start (the exec of sleep), a few hundredths of a percent on a
	// busy machine.
	out = e.cli("stats", "--no-stream", "--format", "{{.CPUPerc}} {{.PIDs}}", "idle")
	var idleCPU float64
	var idlePids int
	if n, _ := fmt.Sscanf(out, "%f%% %d\n", &idleCPU, &idlePids); n != 2 || idleCPU >= 1 || idlePids != 1 {
		t.Errorf("stats of an idle container: %q, want under 1%% and 1 PID", out)
	}
	// The JSON the CLI reads, one-shot.
	var st struct {
		Name        string `json:"name"`
		MemoryStats struct {
			Limit uint64            `json:"limit"`
			Stats map[string]uint64 `json:"stats"`
		} `json:"memory_stats"`
		CPUStats struct {
			OnlineCPUs  uint32 `json:"online_cpus"`
			SystemUsage uint64 `json:"system_cpu_usage"`
		} `json:"cpu_stats"`
	}
	r := e.d.rawRequest(t, "GET", "/containers/busy/stats?stream=false&one-shot=true", "")
	if err := json.Unmarshal([]byte(r.body), &st); err != nil || st.Name != "/busy" || st.MemoryStats.Limit != 64<<20 || st.CPUStats.OnlineCPUs == 0 || st.CPUStats.SystemUsage == 0 {
		t.Errorf("stats JSON: %v %s", err, r.body)
	}
	_, v1 := st.MemoryStats.Stats["total_inactive_file"]
	_, v2 := st.MemoryStats.Stats["inactive_file"]
	if !v1 && !v2 {
		t.Errorf("memory stats lack inactive_file: %v", st.MemoryStats.Stats)
	}

	// The stream: a reading a second, the second with the first as its
	// precpu_stats.
	sr := e.streamStats(t, "busy", 2)
	if len(sr) != 2 || sr[1].PreCPU.SystemUsage != sr[0].CPU.SystemUsage || sr[1].CPU.SystemUsage <= sr[0].CPU.SystemUsage {
		t.Errorf("stats stream: %+v", sr)
	}

	// top: the container's processes only, with ps's columns.
	out = e.cli("top", "busy")
	if !regexp.MustCompile(`^UID\s+PID\s+PPID\s+C\s+STIME\s+TTY\s+TIME\s+CMD\n`).MatchString(out) || !strings.Contains(out, "sleep 1000") || strings.Contains(out, "berthd") {
		t.Errorf("top:\n%s", out)
	}
	// The shell (running the loop itself) and sleep.
	if n := strings.Count(out, "\n"); n != 3 {
		t.Errorf("top lists %d rows, want 2:\n%s", n-1, out)
	}
	out = e.cli("top", "busy", "-o", "pid,comm")
	if !strings.HasPrefix(out, "PID") || !strings.Contains(out, "sleep") {
		t.Errorf("top -o pid,comm:\n%s", out)
	}
	if _, errOut, code := e.cliErr("top", "busy", "-o", "user=PID"); code == 0 || !strings.Contains(errOut, "not allowed") {
		t.Errorf("top renaming PID: exit %d %q", code, errOut)
	}

	// update: live in the cgroup, in inspect, and in stats.
	e.cli("update", "--memory", "96m", "--memory-swap", "192m", "--cpus", "0.5", "--pids-limit", "50", "--restart", "on-failure:3", "busy")
	if got := e.cli("inspect", "--format", "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.PidsLimit}} {{.HostConfig.RestartPolicy.Name}}:{{.HostConfig.RestartPolicy.MaximumRetryCount}}", "busy"); got != "100663296 500000000 50 on-failure:3\n" {
		t.Errorf("inspect after update = %q", got)
	}
	id := strings.TrimSpace(e.cli("inspect", "--format", "{{.Id}}", "busy"))
	if got := cgroupValue(t, id, "memory", "memory.limit_in_bytes", "memory.max"); got != "100663296" {
		t.Errorf("memory limit in the cgroup = %q", got)
	}
	if got := cgroupValue(t, id, "pids", "pids.max", "pids.max"); got != "50" {
		t.Errorf("pids limit in the cgroup = %q", got)
	}
	if got := cgroupValue(t, id, "cpu", "cpu.cfs_quota_us", "cpu.max"); got != "50000" && got != "50000 100000" {
		t.Errorf("cpu quota in the cgroup = %q", got)
	}
	if out := e.cli("stats", "--no-stream", "--format", "{{.MemUsage}}", "busy"); !strings.Contains(out, "/ 96MiB") {
		t.Errorf("stats after update: %q", out)
	}
	// dockerd's refusals.
	e.cli("run", "-d", "--name", "free", e.Image, "sleep", "1000")
	if _, errOut, code := e.cliErr("update", "--memory", "64m", "free"); code == 0 || !strings.Contains(errOut, "Memory limit should be smaller than already set memoryswap limit") {
		t.Errorf("update --memory alone on an unlimited container: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("update", "--memory", "1m", "--memory-swap", "2m", "free"); code == 0 || !strings.Contains(errOut, "Minimum memory limit allowed is 6MB") {
		t.Errorf("update --memory 1m: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("update", "--cpu-period", "100000", "busy"); code == 0 || !strings.Contains(errOut, "CPU Period cannot be updated as NanoCPUs has already been set") {
		t.Errorf("update --cpu-period after --cpus: exit %d %q", code, errOut)
	}
	// A stopped container takes the update at its next start.
	e.cli("run", "--name", "later", e.Image, "true")
	e.cli("update", "--memory", "32m", "--memory-swap", "64m", "later")
	e.cli("start", "-a", "later")
	if got := e.cli("inspect", "--format", "{{.HostConfig.Memory}}", "later"); got != "33554432\n" {
		t.Errorf("stopped container's memory after update: %q", got)
	}
	if _, errOut, code := e.cliErr("top", "later"); code == 0 || !strings.Contains(errOut, "is not running") {
		t.Errorf("top of a stopped container: exit %d %q", code, errOut)
	}
}

// cgroupValue reads a file of the container's cgroup, v1 (controller
// dir) or v2.
func cgroupValue(t *testing.T, id, controller, v1, v2 string) string {
	t.Helper()
	for _, pat := range []string{"/sys/fs/cgroup/" + controller + "/*/*" + id + "*/" + v1, "/sys/fs/cgroup/" + controller + "/*" + id + "*/" + v1,
		"/sys/fs/cgroup/*/*" + id + "*/" + v2, "/sys/fs/cgroup/*" + id + "*/" + v2} {
		if m, _ := filepath.Glob(pat); len(m) > 0 {
			b, err := os.ReadFile(m[0])
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no %s cgroup file of %s", controller, id)
	return ""
}

// TestDockerCpExportDiff: docker cp both ways on a running and a stopped
// container, volumes included; export and diff; the bad inputs.
func TestDockerCpExportDiff(t *testing.T) {
	e := newDockerEnv(t)
	host := t.TempDir()
	e.cli("volume", "create", "data")
	e.cli("run", "-d", "--name", "box", "-v", "data:/data", e.Image, "sh", "-c",
		"mkdir -p /srv/site && echo index > /srv/site/index.html && ln -s /srv/site /link && echo vol > /data/v && rm /etc/group && sleep 1000")
	await(t, "the container's files", func() bool {
		_, _, code := e.cliErr("exec", "box", "test", "-f", "/data/v")
		return code == 0
	})

	// Out of the container: a directory, a file, through a symlink, from
	// a volume.
	e.cli("cp", "box:/srv/site", filepath.Join(host, "site"))
	if b, err := os.ReadFile(filepath.Join(host, "site/index.html")); err != nil || string(b) != "index\n" {
		t.Errorf("cp of a directory out: %q %v", b, err)
	}
	e.cli("cp", "box:/etc/passwd", filepath.Join(host, "passwd"))
	if b, _ := os.ReadFile(filepath.Join(host, "passwd")); !strings.HasPrefix(string(b), "root:x:0:0") {
		t.Errorf("cp of a file out: %q", b)
	}
	e.cli("cp", "-L", "box:/link", filepath.Join(host, "followed"))
	if b, _ := os.ReadFile(filepath.Join(host, "followed/index.html")); string(b) != "index\n" {
		t.Errorf("cp -L of a symlink: %q", b)
	}
	e.cli("cp", "box:/data/v", filepath.Join(host, "v"))
	if b, _ := os.ReadFile(filepath.Join(host, "v")); string(b) != "vol\n" {
		t.Errorf("cp out of a volume: %q", b)
	}

	// Into the container: a file, a directory, into a volume.
	writeFile(t, filepath.Join(host, "in/a.txt"), "aaa")
	writeFile(t, filepath.Join(host, "in/sub/b.txt"), "bbb")
	e.cli("cp", filepath.Join(host, "in/a.txt"), "box:/tmp/")
	e.cli("cp", filepath.Join(host, "in"), "box:/tmp/dir")
	e.cli("cp", filepath.Join(host, "in/a.txt"), "box:/data/from-host")
	if got := e.cli("exec", "box", "sh", "-c", "cat /tmp/a.txt /tmp/dir/sub/b.txt /data/from-host; stat -c %u /tmp/a.txt"); got != "aaabbbaaa0\n" {
		t.Errorf("files copied in: %q", got)
	}
	// From stdin, as a tar.
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	tw.WriteHeader(&tar.Header{Name: "piped.txt", Mode: 0o600, Size: 5})
	tw.Write([]byte("piped"))
	tw.Close()
	if _, code := e.cliIn(tb.String(), "cp", "-", "box:/tmp"); code != 0 {
		t.Errorf("cp - into the container: exit %d", code)
	}
	if got := e.cli("exec", "box", "cat", "/tmp/piped.txt"); got != "piped" {
		t.Errorf("piped file: %q", got)
	}

	// diff: docker's list for what the container did.
	diff := e.cli("diff", "box")
	for _, want := range []string{"A /srv", "A /srv/site", "A /srv/site/index.html", "A /link", "C /etc", "D /etc/group", "C /tmp", "A /tmp/a.txt", "A /tmp/dir"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(diff) {
			t.Errorf("diff lacks %q:\n%s", want, diff)
		}
	}
	// The volume's mount point is in the writable layer (as in dockerd),
	// its content is not; nor are the runtime's own mount points.
	if strings.Contains(diff, "/data/") || strings.Contains(diff, "/etc/hosts") || strings.Contains(diff, "/etc/resolv.conf") {
		t.Errorf("diff shows the volume's content or the runtime's mount points:\n%s", diff)
	}

	// A stopped container: cp both ways, volumes included.
	e.cli("kill", "box")
	await(t, "the container to stop", func() bool { return e.cli("inspect", "--format", "{{.State.Running}}", "box") == "false\n" })
	e.cli("cp", filepath.Join(host, "in/a.txt"), "box:/data/while-stopped")
	e.cli("cp", "box:/data/while-stopped", filepath.Join(host, "back"))
	if b, _ := os.ReadFile(filepath.Join(host, "back")); string(b) != "aaa" {
		t.Errorf("cp on a stopped container: %q", b)
	}
	e.cli("cp", "box:/tmp/dir/sub/b.txt", filepath.Join(host, "b-back"))
	if b, _ := os.ReadFile(filepath.Join(host, "b-back")); string(b) != "bbb" {
		t.Errorf("cp out of a stopped container's rootfs: %q", b)
	}
	e.cli("run", "--rm", "-v", "data:/data", e.Image, "test", "-f", "/data/while-stopped")

	// export: the root file system, the container's changes in it, its
	// volume not.
	exp := filepath.Join(host, "box.tar")
	e.cli("export", "-o", exp, "box")
	names := tarNames(t, exp)
	for _, want := range []string{"bin/busybox", "srv/site/index.html", "tmp/a.txt", "etc/passwd"} {
		if !names[want] {
			t.Errorf("export lacks %s", want)
		}
	}
	if names["etc/group"] || names["data/v"] {
		t.Errorf("export has a deleted file or the volume's")
	}

	// Bad input.
	if _, errOut, code := e.cliErr("cp", "box:/no/such/file", host); code == 0 || !strings.Contains(errOut, "Could not find the file /no/such/file in container box") {
		t.Errorf("cp of a missing path: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("cp", filepath.Join(host, "in/a.txt"), "box:/no/such/dir/x"); code == 0 || !strings.Contains(errOut, "Could not find the file /no/such/dir in container box") {
		t.Errorf("cp to a missing directory: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("cp", host, "nosuchbox:/tmp"); code == 0 || !strings.Contains(errOut, "No such container") {
		t.Errorf("cp to a missing container: exit %d %q", code, errOut)
	}
	// A hostile tar: refused, nothing written out of the container.
	var hb bytes.Buffer
	htw := tar.NewWriter(&hb)
	htw.WriteHeader(&tar.Header{Name: "../../../../../../../tmp/berth-escape", Mode: 0o644, Size: 1})
	htw.Write([]byte("x"))
	htw.Close()
	r := e.d.rawRequest(t, "PUT", "/containers/box/archive?path=/tmp", hb.String())
	if r.status != 400 || !strings.Contains(r.body, "leaves the extraction directory") {
		t.Errorf("hostile tar: %d %s", r.status, r.body)
	}
	if _, err := os.Stat("/tmp/berth-escape"); err == nil {
		os.Remove("/tmp/berth-escape")
		t.Error("a hostile tar wrote to the host")
	}
	if r := e.d.rawRequest(t, "PUT", "/containers/box/archive?path=/tmp", "not a tar at all, just text padding it out to a block........"); r.status != 400 {
		t.Errorf("garbage body: %d %s", r.status, r.body)
	}
	if r := e.d.rawRequest(t, "HEAD", "/containers/box/archive", ""); r.status != 400 {
		t.Errorf("HEAD archive without a path: %d", r.status)
	}
}

func tarNames(t *testing.T, file string) map[string]bool {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(h.Name, "/")] = true
	}
}

// TestDockerContainerPrune: prune removes what does not run, as its
// filters say, and reports it.
func TestDockerContainerPrune(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("run", "--name", "old", "--label", "keep=no", e.Image, "sh", "-c", "head -c 100000 /dev/zero > /big")
	e.cli("run", "--name", "kept", "--label", "keep=yes", e.Image, "true")
	e.cli("create", "--name", "created", e.Image, "true")
	e.cli("run", "-d", "--name", "up", e.Image, "sleep", "1000")

	out := e.cli("container", "prune", "-f", "--filter", "label=keep=no")
	if !strings.Contains(out, "Deleted Containers:") || !regexp.MustCompile(`Total reclaimed space: (9\d|1\d\d)(\.\d+)?kB`).MatchString(out) {
		t.Errorf("prune --filter label:\n%s", out)
	}
	if got := e.cli("ps", "-a", "--format", "{{.Names}}"); strings.Contains(got, "old") || !strings.Contains(got, "kept") {
		t.Errorf("after label prune: %q", got)
	}
	if out := e.cli("container", "prune", "-f", "--filter", "until=1h"); strings.Contains(out, "Deleted Containers") {
		t.Errorf("until=1h pruned fresh containers:\n%s", out)
	}
	e.cli("container", "prune", "-f", "--filter", "label!=keep=yes")
	if got := e.cli("ps", "-a", "--format", "{{.Names}}"); strings.Contains(got, "created") || !strings.Contains(got, "kept") {
		t.Errorf("after label! prune: %q", got)
	}
	e.cli("container", "prune", "-f")
	if got := strings.Fields(e.cli("ps", "-a", "--format", "{{.Names}}")); len(got) != 1 || got[0] != "up" {
		t.Errorf("after prune: %q", got)
	}
	if _, errOut, code := e.cliErr("container", "prune", "-f", "--filter", "color=red"); code == 0 || !strings.Contains(errOut, "invalid filter 'color'") {
		t.Errorf("prune with an unknown filter: exit %d %q", code, errOut)
	}
	if _, errOut, code := e.cliErr("container", "prune", "-f", "--filter", "until=yesterday"); code == 0 || !strings.Contains(errOut, "yesterday") {
		t.Errorf("prune with a bad until: exit %d %q", code, errOut)
	}
}

// TestDockerSystemDFAndPrune: docker system df in the CLI's shape and in
// each API version's, image prune and system prune.
func TestDockerSystemDFAndPrune(t *testing.T) {
	e := newDockerEnv(t)
	e.cli("volume", "create", "vol")
	e.cli("run", "-d", "--name", "up", "-v", "vol:/data", e.Image, "sh", "-c", "head -c 200000 /dev/zero > /data/f; head -c 300000 /dev/zero > /f; sleep 1000")
	e.cli("run", "--name", "down", e.Image, "true")
	await(t, "the files", func() bool {
		_, _, code := e.cliErr("exec", "up", "test", "-s", "/f")
		return code == 0
	})
	out := e.cli("system", "df")
	rows := map[string][]string{}
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[1:] {
		f := regexp.MustCompile(`\s{2,}`).Split(strings.TrimSpace(l), -1)
		rows[f[0]] = f
	}
	if r := rows["Images"]; len(r) < 5 || r[1] != "1" || r[2] != "1" {
		t.Errorf("system df images row %q:\n%s", r, out)
	}
	if r := rows["Containers"]; len(r) < 5 || r[1] != "2" || r[2] != "1" || !strings.HasPrefix(r[3], "300") {
		t.Errorf("system df containers row %q:\n%s", r, out)
	}
	if r := rows["Local Volumes"]; len(r) < 5 || r[1] != "1" || r[2] != "1" || !strings.HasPrefix(r[3], "200") {
		t.Errorf("system df volumes row %q:\n%s", r, out)
	}
	if _, ok := rows["Build Cache"]; !ok {
		t.Errorf("system df has no build cache row:\n%s", out)
	}
	out = e.cli("system", "df", "-v")
	if !strings.Contains(out, "Containers space usage:") || !strings.Contains(out, "vol") || !strings.Contains(out, "up") {
		t.Errorf("system df -v:\n%s", out)
	}
	// The shapes by version: lists up to 1.52, summaries from 1.52.
	for _, tc := range []struct {
		version        string
		legacy, usages bool
	}{{"1.44", true, false}, {"1.52", true, true}, {"1.53", false, true}} {
		r := e.d.rawRequest(t, "GET", "/v"+tc.version+"/system/df", "")
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.body), &m); err != nil || r.status != 200 {
			t.Fatalf("df at %s: %d %s", tc.version, r.status, r.body)
		}
		_, hasLegacy := m["Containers"]
		_, hasUsage := m["ContainerUsage"]
		if hasLegacy != tc.legacy || hasUsage != tc.usages {
			t.Errorf("df at %s: legacy %v usages %v: %s", tc.version, hasLegacy, hasUsage, r.body)
		}
	}
	var du struct {
		ContainerUsage struct{ ActiveCount, TotalCount, TotalSize int64 }
		VolumeUsage    struct{ TotalCount, TotalSize int64 }
	}
	r := e.d.rawRequest(t, "GET", "/v1.53/system/df?type=container&type=volume", "")
	if json.Unmarshal([]byte(r.body), &du) != nil || du.ContainerUsage.ActiveCount != 1 || du.ContainerUsage.TotalCount != 2 || du.ContainerUsage.TotalSize < 300000 || du.VolumeUsage.TotalSize < 200000 {
		t.Errorf("df 1.53 by type: %s", r.body)
	}
	if r := e.d.rawRequest(t, "GET", "/system/df?type=everything", ""); r.status != 400 {
		t.Errorf("df of an unknown type: %d %s", r.status, r.body)
	}

	// image prune: the image in use stays; an unused tagged one goes with
	// -a only.
	e.cli("tag", e.Image, "spare:v1")
	if out := e.cli("image", "prune", "-f"); strings.Contains(out, "spare") {
		t.Errorf("image prune (dangling only) removed a tagged image:\n%s", out)
	}
	e.cli("rm", "-f", "up", "down")
	e.cli("run", "-d", "--name", "keeper", "spare:v1", "sleep", "1000")
	// Both tags name the one image, which keeper uses: nothing goes.
	out = e.cli("image", "prune", "-a", "-f")
	if strings.Contains(out, "deleted:") || strings.Contains(out, "untagged:") || e.cli("images", "-q") == "" {
		t.Errorf("image prune -a removed an image in use:\n%s", out)
	}
	e.cli("rm", "-f", "keeper")
	out = e.cli("system", "prune", "-a", "-f")
	if !strings.Contains(out, "Total reclaimed space") {
		t.Errorf("system prune:\n%s", out)
	}
	if got := e.cli("images", "-q"); got != "" {
		t.Errorf("images after system prune -a: %q", got)
	}
	if got := e.cli("volume", "ls", "-q"); got != "vol\n" {
		t.Errorf("system prune without --volumes removed a volume: %q", got)
	}
	if _, errOut, code := e.cliErr("image", "prune", "-f", "--filter", "color=red"); code == 0 || !strings.Contains(errOut, "invalid filter 'color'") {
		t.Errorf("image prune with a bad filter: exit %d %q", code, errOut)
	}
}

type statsReading struct {
	CPU struct {
		SystemUsage uint64 `json:"system_cpu_usage"`
	} `json:"cpu_stats"`
	PreCPU struct {
		SystemUsage uint64 `json:"system_cpu_usage"`
	} `json:"precpu_stats"`
}

// streamStats reads n readings of GET stats?stream=true.
func (e *dockerEnv) streamStats(t *testing.T, name string, n int) []statsReading {
	t.Helper()
	conn := e.d.dialDocker(t)
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET /containers/"+name+"/stats HTTP/1.1\r\nHost: docker\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("stats stream: %v %v", resp, err)
	}
	dec := json.NewDecoder(resp.Body)
	var out []statsReading
	for range n {
		var r statsReading
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("stats stream reading: %v", err)
		}
		out = append(out, r)
	}
	return out
}
