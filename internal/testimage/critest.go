package testimage

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// CritestParts names the host files the critest stand-in images are built
// from. Only the assembly is done here; fetching Debian's busybox package and
// compiling the two Go programs is the caller's job (hack/critest-images).
type CritestParts struct {
	// Busybox is a busybox binary whose shell searches PATH: Debian's
	// dynamically linked "busybox" package, not busybox-static, whose ash
	// runs applets internally (FEATURE_SH_STANDALONE) so that a masked
	// /bin/ls is never seen. Its shared libraries are copied from the host.
	Busybox string
	// Ipcs is util-linux's ipcs (busybox has none); default /usr/bin/ipcs.
	Ipcs string
	// NoNewPrivs is a static program that prints "Effective uid: N"; it is
	// installed setuid root.
	NoNewPrivs string
	// Pause is a static program that sleeps until SIGTERM or SIGINT and
	// reaps children.
	Pause string
}

// CritestImage is one stand-in image and every upstream reference critest
// pulls it by (registry host included).
type CritestImage struct {
	Refs  []string
	Image v1.Image
}

// The upstream prefixes critest v1.37.0 hard-codes
// (pkg/framework/test_context.go, pkg/validate/consts.go,
// pkg/benchmark/image.go).
const (
	critestE2E     = "registry.k8s.io/e2e-test-images/"
	critestTools   = "gcr.io/k8s-staging-cri-tools/"
	critestBenchmk = "public.ecr.aws/docker/library/"
)

// CritestDefaultImage and CritestWebServerImage are the two names critest
// lets a --test-images-file override; the stand-ins serve them unchanged.
const (
	CritestDefaultImage   = critestE2E + "busybox:1.29-2"
	CritestWebServerImage = critestE2E + "nginx:1.14-2"
)

// critestPasswd and critestGroup are upstream busybox's, which the
// specs' expectations (nobody = 65534, www-data = 33) were written against.
const (
	critestPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"bin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\n" +
		"sync:x:4:100:sync:/bin:/bin/sync\n" +
		"mail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	critestGroup = "root:x:0:\n" +
		"daemon:x:1:\n" +
		"bin:x:2:\n" +
		"sys:x:3:\n" +
		"adm:x:4:\n" +
		"tty:x:5:\n" +
		"disk:x:6:\n" +
		"lp:x:7:\n" +
		"mail:x:8:\n" +
		"kmem:x:9:\n" +
		"wheel:x:10:root\n" +
		"cdrom:x:11:\n" +
		"dialout:x:18:\n" +
		"floppy:x:19:\n" +
		"video:x:28:\n" +
		"audio:x:29:\n" +
		"tape:x:32:\n" +
		"www-data:x:33:\n" +
		"operator:x:37:\n" +
		"utmp:x:43:\n" +
		"plugdev:x:46:\n" +
		"staff:x:50:\n" +
		"lock:x:54:\n" +
		"netdev:x:82:\n" +
		"users:x:100:\n" +
		"nogroup:x:65534:\n"
)

// critestPgrep stands in for pgrep, which neither Debian busybox build has:
// "execSync with timeout" runs `pgrep sleep || true` and must not see
// "pgrep: not found" on stderr.
const critestPgrep = `#!/bin/sh
# pgrep PATTERN: PIDs of the processes whose name matches PATTERN.
for d in /proc/[0-9]*; do
	n="$(cat "$d/comm" 2>/dev/null)" || continue
	echo "$n" | grep -qE -- "$1" && echo "${d#/proc/}"
done
true
`

// critestNginxRun is the nginx stand-in's main script. The image's command
// runs it through `exec -a 'nginx: master process /bin/sh' /usr/sbin/nginx`:
// /usr/sbin/nginx links to busybox, so the kernel's comm is "nginx" (what
// `pidof nginx` matches), /proc/1/cmdline says "master process" (what the
// ContainerPID spec greps), and busybox picks its applet from argv[0]'s
// basename, "sh".
const critestNginxRun = `# nginx stand-in: this shell is "nginx: master process", busybox httpd serves.
echo $$ >/var/run/nginx.pid
trap 'kill "$worker" 2>/dev/null; exit 0' TERM INT QUIT
/bin/busybox httpd -f -p "${NGINX_LISTEN:-80}" -h /usr/share/nginx/html &
worker=$!
wait "$worker"
`

// critestHttpd is httpd's "httpd-foreground": the Multiple Containers spec
// looks for "httpd" in the container log and for HTTP 200 on :80.
const critestHttpd = `#!/bin/sh
echo "AH00558: httpd: Could not reliably determine the server's fully qualified domain name (berth httpd stand-in)" >&2
trap 'kill "$worker" 2>/dev/null; exit 0' TERM INT QUIT
/bin/busybox httpd -f -p 80 -h /usr/local/apache2/htdocs &
worker=$!
wait "$worker"
`

// CritestImages builds every image critest v1.37.0 pulls (conformance and
// benchmark), as stand-ins built from the host: see
// ../shared/reference/critest-offline.md for what each spec needs inside.
// The digest-pinned test-image-digest cannot be reproduced (its manifest
// list is upstream's bytes); it is provided as :latest only.
//
// Images that a spec may remove by ID while another is still needed get
// distinct IDs (a label in their config): pause:3.6 vs pause:3.9, the
// benchmark's busybox tags vs each other and the default image.
func CritestImages(p CritestParts) ([]CritestImage, error) {
	if p.Ipcs == "" {
		p.Ipcs = "/usr/bin/ipcs"
	}
	base, err := critestBaseLayer(p)
	if err != nil {
		return nil, err
	}
	var out []CritestImage
	add := func(cfg v1.Config, extra *layerBuilder, refs ...string) error {
		layers := []v1.Layer{base}
		if extra != nil {
			l, err := extra.layer(gzip.BestCompression)
			if err != nil {
				return fmt.Errorf("build layer of %s: %w", refs[0], err)
			}
			layers = append(layers, l)
		}
		img, err := image(cfg, layers...)
		if err != nil {
			return fmt.Errorf("build %s: %w", refs[0], err)
		}
		out = append(out, CritestImage{Refs: refs, Image: img})
		return nil
	}
	// marker returns a layer holding one empty file, which is how the
	// upstream test images differ from each other.
	marker := func(name string) *layerBuilder {
		l := newLayer()
		l.file(name, 0o644, nil)
		return l
	}
	sh := v1.Config{Cmd: []string{"sh"}}
	labeled := func(v string) v1.Config {
		return v1.Config{Cmd: []string{"sh"}, Labels: map[string]string{"dev.berth.critest.variant": v}}
	}

	if err := add(sh, nil, CritestDefaultImage); err != nil {
		return nil, err
	}

	nginx := func(listen string) (v1.Config, *layerBuilder) {
		l := newLayer()
		l.dir("usr/sbin", 0o755)
		l.symlink("usr/sbin/nginx", "/bin/busybox")
		l.dir("etc/nginx", 0o755)
		l.file("etc/nginx/run.sh", 0o755, []byte(critestNginxRun))
		l.dir("usr/share/nginx/html", 0o755)
		l.file("usr/share/nginx/html/index.html", 0o644, []byte("<html><body><h1>Welcome to nginx!</h1></body></html>\n"))
		cfg := v1.Config{
			// No commas: this also survives tools that split commands as CSV.
			Cmd:        []string{"sh", "-c", "exec -a 'nginx: master process /bin/sh' /usr/sbin/nginx /etc/nginx/run.sh"},
			StopSignal: "SIGTERM",
		}
		if listen != "" {
			cfg.Env = []string{"NGINX_LISTEN=" + listen}
		}
		return cfg, l
	}
	cfg, l := nginx("")
	if err := add(cfg, l, CritestWebServerImage); err != nil {
		return nil, err
	}
	// The host-network port-forward spec forwards to 127.0.0.1:12003 in the
	// host's namespace; loopback only, so nothing else on the host sees it.
	cfg, l = nginx("127.0.0.1:12003")
	if err := add(cfg, l, critestTools+"hostnet-nginx-amd64:latest"); err != nil {
		return nil, err
	}

	httpd := newLayer()
	httpd.dir("usr/local/bin", 0o755)
	httpd.file("usr/local/bin/httpd-foreground", 0o755, []byte(critestHttpd))
	httpd.dir("usr/local/apache2/htdocs", 0o755)
	httpd.file("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n"))
	if err := add(v1.Config{Cmd: []string{"httpd-foreground"}}, httpd, critestE2E+"httpd:2.4.39-4"); err != nil {
		return nil, err
	}

	nnpBin, err := os.ReadFile(p.NoNewPrivs)
	if err != nil {
		return nil, fmt.Errorf("read the no-new-privs program: %w", err)
	}
	nnp := newLayer()
	nnp.dir("usr/local/bin", 0o755)
	// Setuid root: run as uid 1000 it reports euid 0 unless no_new_privs
	// stops the setuid bit from taking effect.
	nnp.file("usr/local/bin/nnp", 0o4755, nnpBin)
	if err := add(v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}, nnp, critestE2E+"nonewprivs:1.3"); err != nil {
		return nil, err
	}

	pauseBin, err := os.ReadFile(p.Pause)
	if err != nil {
		return nil, fmt.Errorf("read the pause program: %w", err)
	}
	pause := func(label string) error {
		l := newLayer()
		l.file("pause", 0o755, pauseBin)
		raw, err := l.layer(gzip.BestCompression)
		if err != nil {
			return err
		}
		cfg := v1.Config{Entrypoint: []string{"/pause"}, User: "65535:65535"}
		refs := []string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"}
		if label != "" {
			// containerd's sandbox image: a different ID from 3.9, or
			// removing pause:3.9 by ID would delete it.
			cfg.Labels = map[string]string{"dev.berth.critest.variant": label}
			refs = []string{"registry.k8s.io/pause:3.6"}
		}
		img, err := image(cfg, raw)
		if err != nil {
			return fmt.Errorf("build pause: %w", err)
		}
		out = append(out, CritestImage{Refs: refs, Image: img})
		return nil
	}
	if err := pause(""); err != nil {
		return nil, err
	}
	if err := pause("pause-3.6"); err != nil {
		return nil, err
	}

	for _, m := range []struct{ ref, file string }{
		{"test-image-tag:test", "test"},
		{"test-image-tag:all", "all"},
		{"test-image-latest:latest", "test-image-latest"},
		{"test-image-1:latest", "test-image-1"},
		{"test-image-2:latest", "test-image-2"},
		{"test-image-3:latest", "test-image-3"},
		// Pinned upstream by a digest no rebuild can match; :latest only.
		{"test-image-digest:latest", "test-image-digest"},
	} {
		if err := add(sh, marker(m.file), critestTools+m.ref); err != nil {
			return nil, err
		}
	}
	if err := add(sh, marker("same-image"),
		critestTools+"test-image-tags:1", critestTools+"test-image-tags:2", critestTools+"test-image-tags:3"); err != nil {
		return nil, err
	}
	for _, u := range []struct{ name, user string }{
		{"test-image-user-uid", "1002"},
		{"test-image-user-username", "www-data"},
		{"test-image-user-uid-group", "1003:1004"},
		{"test-image-user-username-group", "www-data:1004"},
	} {
		if err := add(v1.Config{Cmd: []string{"sh"}, User: u.user}, nil, critestTools+u.name+":latest"); err != nil {
			return nil, err
		}
	}
	grp := newLayer()
	grp.dir("etc", 0o755)
	grp.file("etc/passwd", 0o644, []byte(critestPasswd+"default-user:x:1000:1000:Default User:/home/default-user:/bin/sh\n"))
	grp.file("etc/group", 0o644, []byte(critestGroup+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"))
	grp.dir("home/default-user", 0o755)
	grp.owned("home/default-user", 1000, 1000)
	if err := add(v1.Config{Cmd: []string{"sh"}, User: "1000"}, grp, critestTools+"test-image-predefined-group:latest"); err != nil {
		return nil, err
	}

	// --benchmark pulls, lists and removes these by name; each needs its own
	// ID, or removing one would remove the default test image too.
	for _, tag := range []string{"1.35.0-glibc", "1-uclibc", "1", "1-glibc", "1-musl"} {
		if err := add(labeled("busybox-"+tag), nil, critestBenchmk+"busybox:"+tag); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// critestBaseLayer is the rootfs shared by every stand-in but pause.
func critestBaseLayer(p CritestParts) (v1.Layer, error) {
	bin, err := os.ReadFile(p.Busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	applets, err := appletsOf(p.Busybox)
	if err != nil {
		return nil, err
	}
	l := newLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "sys", "usr", "usr/bin", "usr/sbin",
		"usr/local", "usr/local/bin", "var", "var/run", "var/spool", "var/spool/mail", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("root", 0o700)
	l.dir("tmp", 0o1777)
	l.dir("var/tmp", 0o1777)
	l.file("bin/busybox", 0o755, bin)
	// Hard links, not symlinks: runc masks a path by bind-mounting over it,
	// which follows a symlink and would mask /bin/busybox (every applet).
	for _, a := range applets {
		l.hardlink("bin/"+a, "bin/busybox")
	}
	l.file("bin/pgrep", 0o755, []byte(critestPgrep))
	ipcs, err := os.ReadFile(p.Ipcs)
	if err != nil {
		return nil, fmt.Errorf("read ipcs (util-linux): %w", err)
	}
	l.file("usr/bin/ipcs", 0o755, ipcs)
	for _, bin := range []string{p.Busybox, p.Ipcs} {
		libs, err := sharedLibs(bin)
		if err != nil {
			return nil, err
		}
		for _, lib := range libs {
			data, err := os.ReadFile(lib) // follows symlinks: the image gets the file itself
			if err != nil {
				return nil, fmt.Errorf("read library %s: %w", lib, err)
			}
			rel := strings.TrimPrefix(path.Clean(lib), "/")
			for d := path.Dir(rel); d != "."; d = path.Dir(d) {
				l.dir(d, 0o755)
			}
			l.file(rel, 0o755, data)
		}
	}
	l.file("etc/passwd", 0o644, []byte(critestPasswd))
	l.file("etc/group", 0o644, []byte(critestGroup))
	// glibc's built-in default would do; explicit is clearer to a reader.
	l.file("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nhosts: files dns\n"))
	return l.layer(gzip.BestCompression)
}

// appletsOf lists bin's applets (`busybox --list`), sorted, without
// "busybox" itself.
func appletsOf(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list applets of %s: %w: %w", bin, errdefs.ErrFailedPrecondition, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	slices.Sort(applets)
	return applets, nil
}

// sharedLibs returns the absolute paths of the shared objects bin loads,
// its dynamic loader included, as ldd prints them; none for a static binary.
func sharedLibs(bin string) ([]string, error) {
	abs, err := filepath.Abs(bin)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", bin, err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command("ldd", abs)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		// ldd fails on a static binary, saying so on either stream.
		if bytes.Contains(out, []byte("not a dynamic executable")) || bytes.Contains(stderr.Bytes(), []byte("not a dynamic executable")) {
			return nil, nil
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("ldd %s: %w: %s", bin, errdefs.ErrFailedPrecondition, strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("ldd %s: %w: %w", bin, errdefs.ErrFailedPrecondition, err)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			libs = append(libs, f[2])
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			libs = append(libs, f[0])
		}
	}
	slices.Sort(libs)
	return slices.Compact(libs), nil
}
