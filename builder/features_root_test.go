package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

// Only the stages the target needs run; --target picks one; COPY --from
// takes stages by name and index; a stage can start FROM another.
func TestBuildStages(t *testing.T) {
	e := newEnv(t)
	df := fmt.Sprintf(`FROM %[1]s AS base
RUN echo base > /base.txt
FROM %[1]s AS broken
RUN echo "this stage must not run" && exit 3
FROM base AS child
RUN cat /base.txt > /child.txt
FROM %[1]s
COPY --from=child /child.txt /
COPY --from=0 /base.txt /from-index.txt
`, e.busybox)
	out := e.mustBuild(map[string]string{"Dockerfile": df}, Options{})
	if strings.Contains(out.output, "must not run") {
		t.Fatalf("an unneeded stage ran:\n%s", out.output)
	}
	for p, want := range map[string]string{"child.txt": "base\n", "from-index.txt": "base\n"} {
		if got, err := e.readFile(out.res.Image, p); err != nil || got != want {
			t.Fatalf("%s = %q, %v", p, got, err)
		}
	}
	if _, err := e.stat(out.res.Image, "base.txt"); !os.IsNotExist(err) {
		t.Fatalf("the final stage has the first stage's file: %v", err)
	}
	target := e.mustBuild(map[string]string{"Dockerfile": df}, Options{Target: "child"})
	if got, _ := e.readFile(target.res.Image, "child.txt"); got != "base\n" {
		t.Fatalf("--target child: %q", got)
	}
	if _, err := e.build(map[string]string{"Dockerfile": df}, Options{Target: "broken"}); err == nil || !strings.Contains(err.Error(), "Dockerfile:4") || !strings.Contains(err.Error(), "exit code: 3") {
		t.Fatalf("--target broken: %v", err)
	}
	if _, err := e.build(map[string]string{"Dockerfile": df}, Options{Target: "nope"}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("unknown target: %v", err)
	}
	e.leftovers()
}

// Secrets: a file mount and an env var for the RUN that asks; the value
// masked in the output and found nowhere in the image; an absent optional
// secret is no mount, an absent required one an error naming it.
func TestBuildSecrets(t *testing.T) {
	e := newEnv(t)
	const secret = "s3cr3t-Value-42"
	df := fmt.Sprintf(`FROM %s
RUN --mount=type=secret,id=token test "$(cat /run/secrets/token)" = "%s-no" || sha256sum /run/secrets/token > /token.sum
RUN --mount=type=secret,id=token,env=TOKEN,target=/custom/path echo "env=$TOKEN file=$(cat /custom/path)"
RUN --mount=type=secret,id=absent ls /run/secrets/ 2>&1 || echo "no secrets dir"; test ! -e /run/secrets/absent
RUN test ! -e /run/secrets/token && echo "not mounted here"
`, e.busybox, "x")
	out := e.mustBuild(map[string]string{"Dockerfile": df}, Options{Secrets: map[string][]byte{"token": []byte(secret)}})
	if strings.Contains(out.output, secret) || !strings.Contains(out.output, "env=**** file=****") || !strings.Contains(out.output, "not mounted here") {
		t.Fatalf("output:\n%s", out.output)
	}
	sum, err := e.readFile(out.res.Image, "token.sum")
	if err != nil || !strings.Contains(sum, "/run/secrets/token") {
		t.Fatalf("token.sum %q %v", sum, err)
	}
	for _, p := range []string{"run/secrets", "custom", "dev/.berth-secret-env"} {
		if _, err := e.stat(out.res.Image, p); !os.IsNotExist(err) {
			t.Errorf("mount point %s reached the image: %v", p, err)
		}
	}
	var save bytes.Buffer
	if err := e.images.Save(context.Background(), &save, []string{out.res.Image.ID.String()}, 0); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(save.Bytes(), []byte(secret)) {
		t.Fatal("the secret is in the saved image")
	}
	if bytes.Contains(out.res.Image.RawConfig, []byte(secret)) {
		t.Fatal("the secret is in the config")
	}
	// The cache key does not depend on the value: a rebuild with another
	// value is cached.
	again := e.mustBuild(map[string]string{"Dockerfile": df}, Options{Secrets: map[string][]byte{"token": []byte("other-value")}})
	if again.res.Image.ID != out.res.Image.ID {
		t.Fatal("a new secret value changed the image")
	}

	req := fmt.Sprintf("FROM %s\nRUN true\nRUN --mount=type=secret,id=needed,required=true cat /run/secrets/needed\n", e.busybox)
	if _, err := e.build(map[string]string{"Dockerfile": req}, Options{}); err == nil || !strings.Contains(err.Error(), "Dockerfile:3") || !strings.Contains(err.Error(), "secret needed: required") {
		t.Fatalf("missing required secret: %v", err)
	}
	e.leftovers()
}

// RUN mounts: a cache mount keeps its content from one build to the next;
// a bind mount of the context and a tmpfs leave nothing in the layer.
func TestBuildRunMounts(t *testing.T) {
	e := newEnv(t)
	df := fmt.Sprintf(`FROM %s
ARG N
RUN --mount=type=cache,target=/cache echo "$N" >> /cache/runs && wc -l < /cache/runs > /runs
RUN --mount=type=bind,source=data,target=/data,rw cat /data/in.txt > /copied && touch /data/written-but-dropped
RUN --mount=type=bind,source=data,target=/data test ! -e /data/written-but-dropped
RUN --mount=type=tmpfs,target=/scratch echo tmp > /scratch/f && test -f /scratch/f
`, e.busybox)
	files := map[string]string{"Dockerfile": df, "data/": "", "data/in.txt": "bound\n"}
	first := e.mustBuild(files, Options{BuildArgs: map[string]*string{"N": ptr("1")}})
	second := e.mustBuild(files, Options{BuildArgs: map[string]*string{"N": ptr("2")}})
	if got, _ := e.readFile(first.res.Image, "runs"); strings.TrimSpace(got) != "1" {
		t.Fatalf("first build: runs %q", got)
	}
	if got, _ := e.readFile(second.res.Image, "runs"); strings.TrimSpace(got) != "2" {
		t.Fatalf("second build: the cache mount did not keep its content: runs %q", got)
	}
	if got, _ := e.readFile(second.res.Image, "copied"); got != "bound\n" {
		t.Fatalf("bind mount: %q", got)
	}
	for _, p := range []string{"cache", "data", "scratch"} {
		if _, err := e.stat(second.res.Image, p); !os.IsNotExist(err) {
			t.Errorf("mount point /%s in the image: %v", p, err)
		}
	}
	pruned, err := e.b.Prune(context.Background(), PruneOptions{})
	if err != nil || len(pruned.Deleted) == 0 || pruned.Reclaimed <= 0 {
		t.Fatalf("prune: %+v %v", pruned, err)
	}
	third := e.mustBuild(files, Options{BuildArgs: map[string]*string{"N": ptr("3")}})
	if got, _ := e.readFile(third.res.Image, "runs"); strings.TrimSpace(got) != "1" {
		t.Fatalf("after prune the cache mount should be empty again: runs %q", got)
	}
	e.leftovers()
}

// Heredocs in RUN (script, with a #! line) and COPY.
func TestBuildHeredocs(t *testing.T) {
	e := newEnv(t)
	df := fmt.Sprintf(`# syntax=docker/dockerfile:1
FROM %s
RUN <<EOF
echo one > /one
echo two >> /one
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
COPY <<EOF /etc/motd
hello $NAME
EOF
ARG NAME=world
COPY <<EOF /greet
hello ${NAME}
EOF
`, e.busybox)
	out := e.mustBuild(map[string]string{"Dockerfile": df}, Options{})
	for p, want := range map[string]string{"one": "one\ntwo\n", "script": "script /dev/pipes/EOF\n", "etc/motd": "hello \n", "greet": "hello world\n"} {
		if got, err := e.readFile(out.res.Image, p); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", p, got, err, want)
		}
	}
	e.leftovers()
}

func tarGz(t *testing.T, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for n, c := range files {
		tw.WriteHeader(&tar.Header{Name: n, Mode: 0o640, Size: int64(len(c)), Typeflag: tar.TypeReg, Uid: 33, Gid: 33})
		tw.Write([]byte(c))
	}
	tw.Close()
	zw.Close()
	return buf.String()
}

// COPY and ADD as docker does them: wildcards, directory contents, a file
// into a dir, --chown by name and number, --chmod, .dockerignore with an
// exception, a local archive unpacked by ADD, ADD of a URL, --link, and a
// symlink in the context that cannot lead outside it.
func TestBuildCopyRules(t *testing.T) {
	e := newEnv(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		io.WriteString(w, "downloaded\n")
	}))
	defer srv.Close()
	df := fmt.Sprintf(`FROM %s
COPY *.txt /txt/
COPY dir /copied-dir
COPY dir/sub/deep.txt /etc/
COPY --chown=www-data:www-data --chmod=0600 a.txt /owned
COPY --chown=1234:5678 a.txt /numeric
ADD archive.tar.gz /unpacked/
ADD --chown=1234:5678 archive.tar.gz /unpacked-owned/
ADD %s/file.txt /downloaded.txt
COPY --link b.txt /linked/b.txt
COPY escape/ /escape/
`, e.busybox, srv.URL)
	files := map[string]string{
		"Dockerfile": df, ".dockerignore": "*.md\nsecret*\n!secret-ok.txt\n",
		"a.txt": "a\n", "b.txt": "b\n", "secret.txt": "no\n", "secret-ok.txt": "ok\n", "readme.md": "md\n",
		"dir/": "", "dir/x": "x\n", "dir/sub/": "", "dir/sub/deep.txt": "deep\n",
		"archive.tar.gz": tarGz(t, map[string]string{"in/archive.txt": "from the archive\n"}),
		"escape/":        "", "escape/passwd@": "/etc/passwd",
	}
	out := e.mustBuild(files, Options{})
	img := out.res.Image
	for p, want := range map[string]string{
		"txt/a.txt": "a\n", "txt/b.txt": "b\n", "txt/secret-ok.txt": "ok\n",
		"copied-dir/x": "x\n", "copied-dir/sub/deep.txt": "deep\n", "etc/deep.txt": "deep\n",
		"unpacked/in/archive.txt": "from the archive\n", "downloaded.txt": "downloaded\n", "linked/b.txt": "b\n",
	} {
		if got, err := e.readFile(img, p); err != nil || got != want {
			t.Errorf("%s = %q (%v), want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"txt/secret.txt", "txt/readme.md", "copied-dir/dir"} {
		if _, err := e.stat(img, p); !os.IsNotExist(err) {
			t.Errorf("%s should not be there: %v", p, err)
		}
	}
	for p, want := range map[string][3]uint32{"owned": {0o600, 33, 33}, "numeric": {0o644, 1234, 5678}, "txt/a.txt": {0o644, 0, 0}, "unpacked/in/archive.txt": {0o640, 33, 33}, "unpacked-owned/in/archive.txt": {0o640, 1234, 5678}, "downloaded.txt": {0o600, 0, 0}} {
		fi, err := e.stat(img, p)
		if err != nil {
			t.Fatal(err)
		}
		uid, gid := statOwner(fi)
		if uint32(fi.Mode().Perm()) != want[0] || uid != want[1] || gid != want[2] {
			t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, fi.Mode().Perm(), uid, gid, want[0], want[1], want[2])
		}
	}
	// The context's symlink to /etc/passwd is copied as a symlink, not
	// followed out of the context.
	if fi, err := e.stat(img, "escape/passwd"); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("escape/passwd: %v %v", fi, err)
	}
	// Naming it as a source follows it, inside the context only: there is
	// no /etc/passwd in the context.
	bad := fmt.Sprintf("FROM %s\nCOPY escape/passwd /stolen\n", e.busybox)
	files["Dockerfile"] = bad
	if _, err := e.build(files, Options{}); err == nil || !strings.Contains(err.Error(), "Dockerfile:2") {
		t.Fatalf("COPY through a symlink out of the context: %v", err)
	}
	multi := fmt.Sprintf("FROM %s\nCOPY a.txt b.txt /not-a-dir\n", e.busybox)
	files["Dockerfile"] = multi
	if _, err := e.build(files, Options{}); err == nil || !strings.Contains(err.Error(), "must be a directory") {
		t.Fatalf("two sources to a file: %v", err)
	}
	e.leftovers()
}

// Two builds of one Dockerfile at once both succeed, and the cache they
// share works for a third.
func TestBuildConcurrent(t *testing.T) {
	e := newEnv(t)
	df := fmt.Sprintf("FROM %s\nCOPY f /f\nRUN sleep 0.3 && date +%%s%%N > /stamp\nRUN cat /f /stamp > /both\n", e.busybox)
	files := map[string]string{"Dockerfile": df, "f": "content\n"}
	var wg sync.WaitGroup
	res := make([]*buildOut, 2)
	errs := make([]error, 2)
	for i := range res {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = e.build(files, Options{Tags: []string{fmt.Sprintf("concurrent:%d", i)}})
		}()
	}
	wg.Wait()
	for i := range res {
		if errs[i] != nil {
			t.Fatalf("build %d: %v", i, errs[i])
		}
		if got, _ := e.readFile(res[i].res.Image, "both"); !strings.HasPrefix(got, "content\n") {
			t.Fatalf("build %d: both = %q", i, got)
		}
	}
	third := e.mustBuild(files, Options{})
	if third.output != "" || !slices.Contains([]string{res[0].res.Image.ID.String(), res[1].res.Image.ID.String()}, third.res.Image.ID.String()) {
		t.Fatalf("third build ran steps (%q) or gave a new image", third.output)
	}
	e.leftovers()
}

func statOwner(fi os.FileInfo) (uint32, uint32) {
	st := fi.Sys().(*syscall.Stat_t)
	return st.Uid, st.Gid
}

// Bad input gets a clear error with the Dockerfile's line.
func TestBuildErrors(t *testing.T) {
	e := newEnv(t)
	from := "FROM " + e.busybox + "\n"
	for _, tc := range []struct {
		name, dockerfile string
		files            map[string]string
		want             []string
	}{
		{"unknown instruction", from + "RUN true\nFOO bar\n", nil, []string{"Dockerfile:3", "unknown instruction: FOO"}},
		{"syntax error", from + "COPY\n", nil, []string{"Dockerfile:2", "COPY requires at least two arguments"}},
		{"missing file", from + "WORKDIR /x\nCOPY nothere.txt /\n", nil, []string{"Dockerfile:3", "nothere.txt", "not found"}},
		{"missing stage", from + "COPY --from=nostage /x /x\n", nil, []string{"Dockerfile:2", "nostage"}},
		{"later stage", "FROM " + e.busybox + " AS a\nCOPY --from=b /x /x\nFROM " + e.busybox + " AS b\n", nil, []string{"Dockerfile:2", "defined before"}},
		{"failing run", from + "ENV A=1\nRUN exit 7\n", nil, []string{"Dockerfile:3", "exit code: 7"}},
		{"other frontend", "# syntax=example.com/my/frontend:2\n" + from, nil, []string{"Dockerfile:1", "syntax=example.com/my/frontend:2", "built-in"}},
		{"empty", "\n\n", nil, []string{"Dockerfile", "empty"}},
		{"no from", "RUN true\n", nil, []string{"Dockerfile:1"}},
		{"bad stopsignal", from + "STOPSIGNAL SIGNOPE\n", nil, []string{"Dockerfile:2", "SIGNOPE"}},
		{"ssh mount", from + "RUN --mount=type=ssh true\n", nil, []string{"Dockerfile:2", "ssh", "not implemented"}},
		{"foreign arch", "FROM --platform=linux/arm64 scratch\nRUN true\n", nil, []string{"Dockerfile:2", "linux/arm64", "host's architecture"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"Dockerfile": tc.dockerfile}
			for k, v := range tc.files {
				files[k] = v
			}
			_, err := e.build(files, Options{})
			if err == nil {
				t.Fatal("build succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Contexts that are not tars, or whose entries leave the context.
	rawTar := func(name string) []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		tw.WriteHeader(&tar.Header{Name: "Dockerfile", Mode: 0o644, Size: int64(len(from)), Typeflag: tar.TypeReg})
		tw.Write([]byte(from))
		tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: 1, Typeflag: tar.TypeReg})
		tw.Write([]byte("x"))
		tw.Close()
		return buf.Bytes()
	}
	for name, body := range map[string][]byte{
		"not a tar":      []byte("FROM busybox\nRUN true\n and this is not a tar archive at all, just text that goes on for a while......................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................................."),
		"dotdot entry":   rawTar("../escaped"),
		"absolute entry": rawTar("/etc/escaped"),
	} {
		_, err := e.b.Build(context.Background(), Options{Context: bytes.NewReader(body)})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "build context") {
			t.Errorf("%s: %v", name, err)
		}
		if _, serr := os.Stat("/etc/escaped"); serr == nil {
			t.Fatal("an absolute entry was written to the host")
		}
	}
	e.leftovers()
}

// The rest of the directives' semantics: ONBUILD triggers run in a child
// build (and do not carry over), SHELL changes RUN's shell, the automatic
// platform ARGs, COPY --from an image, and --pull pulls a present image.
func TestBuildMoreDirectives(t *testing.T) {
	e := newEnv(t)
	parent := fmt.Sprintf("FROM %s\nONBUILD RUN echo triggered > /onbuild\n", e.busybox)
	p := e.mustBuild(map[string]string{"Dockerfile": parent}, Options{Tags: []string{"test/parent:1"}})
	if c := config(t, p.res.Image); len(c.Config.OnBuild) != 1 {
		t.Fatalf("parent OnBuild %v", c.Config.OnBuild)
	}
	child := fmt.Sprintf(`FROM test/parent:1
SHELL ["/bin/sh", "-ec"]
ARG TARGETARCH
RUN echo "$TARGETARCH" > /arch
SHELL ["/bin/echo"]
RUN shell-was-echo > /dev/null
COPY --from=%s /etc/passwd /copied-passwd
`, e.busybox)
	c := e.mustBuild(map[string]string{"Dockerfile": child}, Options{Pull: false})
	img := c.res.Image
	if got, _ := e.readFile(img, "onbuild"); got != "triggered\n" {
		t.Errorf("ONBUILD trigger: %q", got)
	}
	if cfg := config(t, img); len(cfg.Config.OnBuild) != 0 || !slices.Equal(cfg.Config.Shell, []string{"/bin/echo"}) {
		t.Errorf("child config OnBuild %v Shell %v", cfg.Config.OnBuild, cfg.Config.Shell)
	}
	if got, _ := e.readFile(img, "arch"); strings.TrimSpace(got) != goruntimeArch() {
		t.Errorf("TARGETARCH = %q", got)
	}
	if !strings.Contains(c.output, "shell-was-echo > /dev/null") {
		t.Errorf("SHELL [\"/bin/echo\"] did not run echo: %q", c.output)
	}
	if got, _ := e.readFile(img, "copied-passwd"); !strings.Contains(got, "www-data") {
		t.Errorf("COPY --from an image: %q", got)
	}
	// --pull pulls the base again even though it is present.
	pulled := e.mustBuild(map[string]string{"Dockerfile": fmt.Sprintf("FROM %s\nRUN true\n", e.busybox)}, Options{Pull: true})
	n := 0
	for _, ev := range pulled.events {
		if ev.Kind == EventPull {
			n++
		}
	}
	if n == 0 {
		t.Error("--pull did not pull")
	}
	e.leftovers()
}

func goruntimeArch() string { return goruntime.GOARCH }
