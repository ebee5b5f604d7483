package testimage

import (
	"compress/gzip"
	"fmt"
	"math/rand/v2"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// WhiteoutPaths says what the root filesystem of the Whiteouts image must
// look like once its layers are stacked.
type WhiteoutPaths struct {
	// Files maps each path that must exist to its exact content.
	Files map[string]string
	// Absent lists paths that lower layers created and upper layers removed.
	Absent []string
}

// ExpectedWhiteouts returns the paths that tests of the Whiteouts image
// assert on.
//
// Layer 2 creates /data/keep.txt, /data/remove-me.txt, /data/gone/inner.txt,
// /olddir/a.txt, /olddir/sub/b.txt and /etc/motd. Layer 3 deletes
// /data/remove-me.txt (".wh.remove-me.txt"), deletes the directory
// /data/gone (".wh.gone"), makes /olddir opaque (".wh..wh..opq") and adds
// /olddir/new.txt, and replaces /etc/motd.
func ExpectedWhiteouts() WhiteoutPaths {
	return WhiteoutPaths{
		Files: map[string]string{
			"/data/keep.txt":  "keep\n",
			"/olddir/new.txt": "new\n",
			"/etc/motd":       "upper\n",
			"/bin/busybox":    "", // content not checked: the host's binary
		},
		Absent: []string{
			"/data/remove-me.txt",
			"/data/gone",
			"/data/gone/inner.txt",
			"/olddir/a.txt",
			"/olddir/sub",
			"/olddir/sub/b.txt",
		},
	}
}

// Whiteouts returns a three-layer image (busybox base, then the layers
// described by ExpectedWhiteouts) whose upper layer deletes a file and a
// directory with OCI whiteouts and replaces a directory with an opaque
// whiteout.
func Whiteouts() (v1.Image, error) {
	base, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	mid := newLayer()
	mid.dir("data", 0o755)
	mid.file("data/keep.txt", 0o644, []byte("keep\n"))
	mid.file("data/remove-me.txt", 0o644, []byte("remove me\n"))
	mid.dir("data/gone", 0o755)
	mid.file("data/gone/inner.txt", 0o644, []byte("inner\n"))
	mid.dir("olddir", 0o755)
	mid.file("olddir/a.txt", 0o644, []byte("a\n"))
	mid.dir("olddir/sub", 0o755)
	mid.file("olddir/sub/b.txt", 0o644, []byte("b\n"))
	mid.dir("etc", 0o755)
	mid.file("etc/motd", 0o644, []byte("lower\n"))
	midL, err := mid.layer(gzip.BestCompression)
	if err != nil {
		return nil, err
	}

	top := newLayer()
	top.dir("data", 0o755)
	top.file("data/.wh.remove-me.txt", 0o000, nil)
	top.file("data/.wh.gone", 0o000, nil)
	top.dir("olddir", 0o755)
	top.file("olddir/.wh..wh..opq", 0o000, nil)
	top.file("olddir/new.txt", 0o644, []byte("new\n"))
	top.dir("etc", 0o755)
	top.file("etc/motd", 0o644, []byte("upper\n"))
	topL, err := top.layer(gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	return image(v1.Config{Cmd: []string{"sh"}}, base, midL, topL)
}

// NonRootUID and NonRootGID are the user and group the NonRoot image runs as.
const (
	NonRootUID  = 1000
	NonRootGID  = 1000
	NonRootName = "berth"
)

// NonRoot returns the busybox image with USER 1000:1000, a passwd and group
// entry "berth" for it and a home directory /home/berth owned by it.
func NonRoot() (v1.Image, error) {
	base, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	u := newLayer()
	u.dir("etc", 0o755)
	u.file("etc/passwd", 0o644, []byte(basePasswd+fmt.Sprintf("%s:x:%d:%d:berth:/home/%s:/bin/sh\n", NonRootName, NonRootUID, NonRootGID, NonRootName)))
	u.file("etc/group", 0o644, []byte(baseGroup+fmt.Sprintf("%s:x:%d:\n", NonRootName, NonRootGID)))
	u.dir("home", 0o755)
	u.dir("home/"+NonRootName, 0o755)
	u.owned("home/"+NonRootName, NonRootUID, NonRootGID)
	u.file("home/"+NonRootName+"/.profile", 0o644, []byte("export PS1='$ '\n"))
	u.owned("home/"+NonRootName+"/.profile", NonRootUID, NonRootGID)
	ul, err := u.layer(gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	return image(v1.Config{
		Cmd:        []string{"sh"},
		User:       fmt.Sprintf("%d:%d", NonRootUID, NonRootGID),
		WorkingDir: "/home/" + NonRootName,
	}, base, ul)
}

// Big returns the busybox image plus `layers` layers holding about totalMB
// MiB of seeded pseudo-random data between them (so gzip cannot shrink it
// and the pull benchmark measures real transfer and unpack work). Each data
// layer has a few files of different sizes and a small compressible text file.
func Big(totalMB, layers int) (v1.Image, error) {
	if totalMB < 1 || layers < 1 {
		return nil, fmt.Errorf("build big image of %d MiB in %d layers: %w", totalMB, layers, errdefs.ErrInvalidArgument)
	}
	base, err := busyboxLayer()
	if err != nil {
		return nil, err
	}
	all := []v1.Layer{base}
	perLayer := int64(totalMB) << 20 / int64(layers)
	for i := range layers {
		// A fixed seed per layer: the same arguments give the same image on
		// every run and every Go version (ChaCha8's stream is specified).
		var seed [32]byte
		copy(seed[:], fmt.Sprintf("berth-big-layer-%d", i))
		rng := rand.NewChaCha8(seed)
		l := newLayer()
		dir := fmt.Sprintf("data/layer%02d", i)
		l.dir("data", 0o755)
		l.dir(dir, 0o755)
		// Split into files of 1/2, 1/4, 1/8, ... of the layer, so the unpack
		// handles a mix of large and small files.
		left := perLayer
		for j := 0; left > 0; j++ {
			n := left / 2
			if n < 64<<10 {
				n = left
			}
			buf := make([]byte, n)
			_, _ = rng.Read(buf) // ChaCha8.Read never fails
			l.file(fmt.Sprintf("%s/blob%02d.bin", dir, j), 0o644, buf)
			left -= n
		}
		text := make([]byte, 0, 64<<10)
		for k := 0; len(text) < 64<<10; k++ {
			text = fmt.Appendf(text, "line %d of layer %d: the quick brown fox jumps over the lazy dog\n", k, i)
		}
		l.file(dir+"/notes.txt", 0o644, text)
		// BestSpeed: random data does not compress anyway and the benchmark
		// should not wait minutes for its image.
		ll, err := l.layer(gzip.BestSpeed)
		if err != nil {
			return nil, err
		}
		all = append(all, ll)
	}
	return image(v1.Config{Cmd: []string{"sh"}}, all...)
}
