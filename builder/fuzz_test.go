package builder

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"golang.org/x/sys/unix"
)

func fuzzTar(entries ...tar.Header) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range entries {
		h := h
		body := []byte(h.Linkname)
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(h.Name))
			body = []byte(h.Name)
		}
		tw.WriteHeader(&h)
		if h.Typeflag == tar.TypeReg {
			tw.Write(body)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzReadContext: whatever the archive, reading the context writes only
// its spool, ends, and fails only as a bad argument (or a cut stream),
// never with a panic; every path of what it read resolves (or fails) in
// bounded time, and writing it out stays in its dir. Every input touches
// the file system, so run it with a short -fuzzminimizetime (5x):
// minimizing an interesting input at the default 60 s per input looks
// like a hang.
func FuzzReadContext(f *testing.F) {
	f.Add(fuzzTar(tar.Header{Name: "Dockerfile", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "../escape", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "/abs", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: ".."}, tar.Header{Name: "l/escape", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/"}, tar.Header{Name: "l/escape", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "b"}, tar.Header{Name: "b", Typeflag: tar.TypeSymlink, Linkname: "a/x"}))
	f.Add(fuzzTar(tar.Header{Name: "h", Typeflag: tar.TypeLink, Linkname: "../outside"}))
	f.Add(fuzzTar(tar.Header{Name: "f", Typeflag: tar.TypeReg, Mode: 0o644}, tar.Header{Name: "d/h", Typeflag: tar.TypeLink, Linkname: "f"}))
	f.Add(fuzzTar(tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}, tar.Header{Name: "d/../../x", Typeflag: tar.TypeReg, Mode: 0o644}))
	f.Add(fuzzTar(tar.Header{Name: "dev", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}))
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(fuzzTar(tar.Header{Name: "a/b/c", Typeflag: tar.TypeReg, Mode: 0o600}))
	zw.Close()
	f.Add(gz.Bytes())
	f.Add([]byte("not a tar"))
	f.Fuzz(func(t *testing.T, data []byte) {
		parent := t.TempDir()
		type result struct {
			c   *ctxFS
			err error
		}
		done := make(chan result, 1)
		go func() {
			c, err := readContext(context.Background(), bytes.NewReader(data), filepath.Join(parent, "spool"))
			done <- result{c, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("reading hangs on %q", data)
		}
		if err := res.err; err != nil {
			if !errdefs.IsInvalidArgument(err) && !errdefs.IsNotImplemented(err) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("unclassified error: %v", err)
			}
			if ents, _ := os.ReadDir(parent); len(ents) != 0 {
				t.Fatalf("a failed read left %v", ents)
			}
			return
		}
		c := res.c
		defer c.close()
		// Every name, followed or not, resolves or fails; a symlink
		// loop ends.
		var walk func(p string, depth int)
		walk = func(p string, depth int) {
			ents, err := c.readDir(p)
			if err != nil || depth > 20 {
				return
			}
			for _, e := range ents {
				q := path.Join(p, e.name)
				c.stat(q, true)
				c.stat(q+"/x/../..", true)
				if e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
					walk(q, depth+1)
				}
			}
		}
		walk(".", 0)
		if err := c.materialize(context.Background(), filepath.Join(parent, "context")); err != nil {
			t.Fatalf("write out: %v", err)
		}
		ents, _ := os.ReadDir(parent)
		if len(ents) != 2 {
			t.Fatalf("reading and writing out the context wrote outside it: %v", ents)
		}
	})
}

// FuzzDockerfile runs the front of the builder (parse, syntax check,
// global ARGs, stage planning and the metadata instructions, variable
// expansion of every instruction) on arbitrary Dockerfiles: errors, never
// panics, and errors are classified.
func FuzzDockerfile(f *testing.F) {
	for _, s := range []string{
		"FROM busybox\nRUN echo hi\n",
		"# syntax=docker/dockerfile:1.7\nARG B=busybox\nFROM ${B} AS x\nENV A=1 B=\"two words\"\nLABEL a=b\nEXPOSE 80/tcp 53/udp 8000-8002\nCMD [\"sh\"]\nENTRYPOINT echo\nHEALTHCHECK --interval=1s CMD true\nSTOPSIGNAL SIGKILL\nSHELL [\"/bin/bash\", \"-c\"]\nONBUILD RUN x\nUSER 1:2\nVOLUME /v\nMAINTAINER me\nWORKDIR a/b\n",
		"FROM a AS b\nFROM b\nCOPY --from=b /x /y\nRUN --mount=type=secret,id=s,env=E --mount=type=cache,target=/c <<EOF\nls\nEOF\n",
		"# escape=`\nFROM x\nRUN echo `\n  hi\n",
		"ARG X\nFROM $X\n",
		"FROM x\nARG A=${B:-c}\nENV D=${A:+e}\nEXPOSE ${D}\n",
		"FROM scratch\nCOPY <<EOF /f\n$X\nEOF\n",
		"FROM x\nEXPOSE 99999\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		check := func(err error) {
			if err != nil && !errdefs.IsInvalidArgument(err) && !errdefs.IsNotImplemented(err) {
				t.Fatalf("unclassified error: %v", err)
			}
		}
		df, err := parseDockerfile("Dockerfile", []byte(src))
		check(err)
		if err != nil {
			return
		}
		bd := &build{df: df, escape: df.escape, buildArgs: map[string]string{}, usedArgs: map[string]bool{},
			opts: Options{NoCache: true}, printer: newPrinter(nil), host: platform{OS: "linux", Arch: "amd64"}, target: platform{OS: "linux", Arch: "amd64"}}
		bd.global, err = metaArgs(df, bd.lexer(), defaultArgs(bd.host, bd.target, ""), nil)
		check(err)
		if err != nil {
			return
		}
		check(bd.planStages())
		for _, st := range df.stages {
			s := &state{img: emptyImage(bd.target), key: stepKey("", "fuzz")}
			s.env = envList(s.img.Config.Env)
			for _, cmd := range st.Commands {
				if err := bd.expand(s, cmd); err != nil {
					continue
				}
				switch c := cmd.(type) {
				case *instructions.RunCommand:
					bd.runArgs(s, c)
					instructions.GetMounts(c)
				case *instructions.CopyCommand, *instructions.AddCommand, *instructions.WorkdirCommand:
				default:
					err := bd.metadata(context.Background(), s, cmd)
					if err != nil && strings.Contains(err.Error(), "not implemented") {
						continue
					}
				}
			}
			if _, _, err := s.encode(); err != nil {
				t.Fatalf("the state does not encode: %v", err)
			}
		}
	})
}
