package main

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-dev/berth/internal/testimage"
)

func TestServesPushAndPullWithBlobsOnDisk(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(t.Context())
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--addr", "127.0.0.1:0", "--dir", dir, "--quiet"}, pw, io.Discard)
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		t.Fatalf("read the address line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	if !ok {
		t.Fatalf("first line %q, want \"listening on ADDR\"", line)
	}

	img, err := testimage.Busybox()
	if err != nil {
		t.Fatal(err)
	}
	ref := addr + "/berth/busybox:latest"
	if err := testimage.Push(t.Context(), img, ref); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	got, err := remote.Image(r, remote.WithContext(t.Context()))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if d, _ := got.Digest(); d != want {
		t.Errorf("pulled %s, pushed %s", d, want)
	}
	ls, _ := img.Layers()
	ld, _ := ls[0].Digest()
	if _, err := os.Stat(filepath.Join(dir, "sha256", ld.Hex)); err != nil {
		t.Errorf("layer blob not on disk under --dir: %v", err)
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after cancel: %v, want a clean exit", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("registry did not stop after its context was cancelled")
	}
}

func TestBadFlag(t *testing.T) {
	if err := run(t.Context(), []string{"--nope"}, io.Discard, io.Discard); err == nil {
		t.Error("run accepted an unknown flag")
	}
}
