package testimage

import (
	"archive/tar"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berth-dev/berth/internal/testutil"
)

// TestBusyboxRunsInChroot unpacks the image and runs its shell chrooted
// into it, proving the image is usable as a container rootfs.
func TestBusyboxRunsInChroot(t *testing.T) {
	testutil.RequireRoot(t, "chroots into the unpacked image")
	img, err := NonRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		// Names come from our own builder; a plain join is enough here.
		p := filepath.Join(dir, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, os.FileMode(h.Mode)&os.ModePerm); err != nil {
				t.Fatal(err)
			}
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode)&os.ModePerm)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(f, tr); err != nil {
				t.Fatal(err)
			}
			f.Close()
		case tar.TypeLink:
			if err := os.Link(filepath.Join(dir, h.Linkname), p); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("/bin/sh", "-c", "cd && echo hello from $(pwd) && id -u berth && ls /bin/httpd /bin/nc")
	cmd.Env = []string{"PATH=" + PATH, "HOME=/home/berth"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("run sh in the image: %v\n%s", err, out)
	}
	want := "hello from /home/berth\n1000\n/bin/httpd\n/bin/nc\n"
	if string(out) != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	if strings.Contains(string(out), "not found") {
		t.Error("an applet is missing")
	}
}
