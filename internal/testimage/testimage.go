// Package testimage builds small, deterministic OCI images for Berth's tests
// from the host's busybox-static binary, so that no test needs the internet.
//
// Every image uses OCI media types (manifest, config, gzip layers) and is
// built the same way each time: members sorted, mtime 0, owned by root unless
// a test needs otherwise, gzip without a timestamp. Building an image twice
// on the same host gives the same digest. The images are linux/<host arch>.
package testimage

import (
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	goruntime "runtime"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxPath is where Debian's busybox-static installs the binary.
const BusyboxPath = "/bin/busybox"

// PATH is the PATH every test image sets.
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

const (
	basePasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	baseGroup = "root:x:0:\n" +
		"www-data:x:33:\n" +
		"nogroup:x:65534:\n"
)

// Busybox returns a one-layer image: /bin/busybox with every applet it lists
// (sh, sleep, httpd, nc, echo, cat, ls, id, top, ...) hard-linked in /bin,
// /etc/passwd and /etc/group with root, www-data (33) and nobody (65534),
// PATH set and Cmd ["sh"].
func Busybox() (v1.Image, error) {
	base, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	return image(v1.Config{Cmd: []string{"sh"}}, base)
}

// BusyboxApplets returns the applet names the host's busybox provides, which
// are the files hard-linked to /bin/busybox in every image of this package.
func BusyboxApplets() ([]string, error) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		return nil, fmt.Errorf("find busybox (install busybox-static): %w: %w", errdefs.ErrNotFound, err)
	}
	out, err := exec.Command(BusyboxPath, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("list busybox applets: %w: %w", errdefs.ErrFailedPrecondition, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		// "/" would make an applet a path; busybox never lists one, but the
		// image must not depend on that.
		if a != "busybox" && !strings.Contains(a, "/") {
			applets = append(applets, a)
		}
	}
	slices.Sort(applets)
	return applets, nil
}

func busyboxLayer() (v1.Layer, error) {
	applets, err := BusyboxApplets()
	if err != nil {
		return nil, err
	}
	bin, err := os.ReadFile(BusyboxPath)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	l := newLayer()
	for _, d := range []string{"bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "usr/sbin", "var", "var/www"} {
		l.dir(d, 0o755)
	}
	l.dir("root", 0o700)
	l.dir("tmp", 0o1777)
	l.dir("var/tmp", 0o1777)
	l.file("bin/busybox", 0o755, bin)
	// Hard links, not symlinks: a masked path (runc bind-mounts /dev/null
	// over it) must not follow a symlink to /bin/busybox and mask every
	// applet at once.
	for _, a := range applets {
		l.hardlink("bin/"+a, "bin/busybox")
	}
	l.file("etc/passwd", 0o644, []byte(basePasswd))
	l.file("etc/group", 0o644, []byte(baseGroup))
	l.file("etc/hostname", 0o644, []byte("berth\n"))
	return l.layer(gzip.BestCompression)
}

// image assembles an OCI image for linux/<host arch> with PATH in its
// environment and the given config on top.
func image(cfg v1.Config, layers ...v1.Layer) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read empty config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = goruntime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config = cfg
	cf.Config.Env = append([]string{"PATH=" + PATH}, cfg.Env...)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	adds := make([]mutate.Addendum, 0, len(layers))
	for _, l := range layers {
		adds = append(adds, mutate.Addendum{
			Layer:     l,
			MediaType: types.OCILayer,
			History:   v1.History{Created: v1.Time{Time: time.Unix(0, 0).UTC()}, CreatedBy: "berth testimage"},
		})
	}
	img, err = mutate.Append(img, adds...)
	if err != nil {
		return nil, fmt.Errorf("append layers: %w", err)
	}
	return img, nil
}

// Push writes img to ref (for example "127.0.0.1:5000/berth/busybox:latest").
// Registries on localhost and 127.0.0.1 are spoken to over plain http.
func Push(ctx context.Context, img v1.Image, ref string) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("parse reference %q: %w: %w", ref, errdefs.ErrInvalidArgument, err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w: %w", ref, errdefs.ErrUnavailable, err)
	}
	return nil
}
