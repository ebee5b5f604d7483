package e2e

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/internal/testimage"
)

// pushed is an image in the test registry: its reference, config digest
// (the image ID) and manifest digest.
type pushed struct {
	Ref      string
	ID       string
	Manifest string
}

func push(t testing.TB, img v1.Image, ref string) pushed {
	t.Helper()
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	id, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return pushed{Ref: ref, ID: id.String(), Manifest: md.String()}
}

func mustImage(t testing.TB, build func() (v1.Image, error)) v1.Image {
	t.Helper()
	img, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// hostileImage is busybox plus a layer whose entry climbs out of the layer
// root.
func hostileImage(t testing.TB) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("escaped\n")
	tw.WriteHeader(&tar.Header{Name: "../../../../berth-e2e-escape", Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg})
	tw.Write(body)
	tw.Close()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func TestCRIImageService(t *testing.T) {
	reg := newRegistry(t)
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	// The same image under an upstream name that the hosts dir mirrors.
	push(t, mustImage(t, testimage.Busybox), reg.Host+"/library/busybox:1.36")
	nonroot := push(t, mustImage(t, testimage.NonRoot), reg.Host+"/berth/nonroot:latest")
	wh := push(t, mustImage(t, testimage.Whiteouts), reg.Host+"/berth/whiteouts:latest")
	// With its shim and berth-runc, so that Status reports the runtime
	// ready for what it is.
	d := startDaemonWith(t, reg, daemonOptions{Mirrored: []string{"docker.io"}, Shim: shimBinary(t)})
	rt, is := d.CRI()
	ctx := ctxT(t)

	ver, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || ver.RuntimeName != "berth" || ver.RuntimeApiVersion != "v1" {
		t.Fatalf("Version = %v, %v", ver, err)
	}
	st, err := rt.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := condition(st.Status, runtimeapi.RuntimeReady); c == nil || !c.Status {
		t.Fatalf("RuntimeReady not true: %v", st.Status)
	}

	pull := func(ref string, auth *runtimeapi.AuthConfig) string {
		t.Helper()
		resp, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
		if err != nil {
			t.Fatalf("PullImage %s: %v", ref, err)
		}
		return resp.ImageRef
	}

	ref := pull(bb.Ref, nil)
	if ref != bb.ID {
		t.Fatalf("PullImage image_ref = %q, want the image ID %q", ref, bb.ID)
	}
	// Mirrored upstream name: same image, second tag.
	if got := pull("busybox:1.36", nil); got != bb.ID {
		t.Fatalf("pull through docker.io mirror = %q, want %q", got, bb.ID)
	}
	status, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: bb.ID}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	img := status.Image
	if img == nil || img.Id != bb.ID {
		t.Fatalf("ImageStatus(%s) = %v", bb.ID, img)
	}
	wantTags := []string{bb.Ref, "docker.io/library/busybox:1.36"}
	for _, tag := range wantTags {
		if !slices.Contains(img.RepoTags, tag) {
			t.Errorf("RepoTags %v lacks %s", img.RepoTags, tag)
		}
	}
	if want := reg.Host + "/berth/busybox@" + bb.Manifest; !slices.Contains(img.RepoDigests, want) {
		t.Errorf("RepoDigests %v lacks %s", img.RepoDigests, want)
	}
	if img.Size == 0 {
		t.Error("image size is 0")
	}
	if len(status.Info) == 0 {
		t.Error("verbose ImageStatus has no info")
	}
	// By tag and by repo digest resolve to the same image.
	for _, name := range []string{bb.Ref, "busybox:1.36", reg.Host + "/berth/busybox@" + bb.Manifest, bb.ID[len("sha256:"):]} {
		s, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err != nil || s.Image == nil || s.Image.Id != bb.ID {
			t.Errorf("ImageStatus(%s) = %v, %v; want %s", name, s.GetImage(), err, bb.ID)
		}
	}
	// Unknown image: empty response, not an error.
	s, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: reg.Host + "/no/such:image"}})
	if err != nil || s.Image != nil {
		t.Fatalf("ImageStatus(unknown) = %v, %v; want empty response", s.GetImage(), err)
	}

	if got := pull(nonroot.Ref, nil); got != nonroot.ID {
		t.Fatalf("nonroot image_ref = %s", got)
	}
	s, err = is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: nonroot.Ref}})
	if err != nil || s.Image.GetUid().GetValue() != 1000 {
		t.Errorf("nonroot uid = %v, %v; want 1000", s.GetImage().GetUid(), err)
	}
	pull(wh.Ref, nil)

	list, err := is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Images) != 3 {
		t.Errorf("ListImages = %d images, want 3 (busybox with two tags, nonroot, whiteouts): %v", len(list.Images), list.Images)
	}
	filtered, err := is.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: nonroot.Ref}}})
	if err != nil || len(filtered.Images) != 1 || filtered.Images[0].Id != nonroot.ID {
		t.Errorf("ListImages(filter %s) = %v, %v", nonroot.Ref, filtered.GetImages(), err)
	}

	fs, err := is.ImageFsInfo(ctx, &runtimeapi.ImageFsInfoRequest{})
	if err != nil || len(fs.ImageFilesystems) != 1 {
		t.Fatalf("ImageFsInfo = %v, %v", fs, err)
	}
	usage := fs.ImageFilesystems[0]
	duBytes, duInodes := du(t, d.Root)
	if got := int64(usage.UsedBytes.GetValue()); !within(got, duBytes, 0.10) {
		t.Errorf("ImageFsInfo used_bytes = %d, du says %d", got, duBytes)
	}
	if got := int64(usage.InodesUsed.GetValue()); !within(got, duInodes, 0.10) {
		t.Errorf("ImageFsInfo inodes_used = %d, du says %d", got, duInodes)
	}

	// Removing by one of two tags removes the image with both (CRI
	// semantics, as containerd and critest have it).
	if _, err := is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "busybox:1.36"}}); err != nil {
		t.Fatal(err)
	}
	s, err = is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: bb.Ref}})
	if err != nil || s.Image != nil {
		t.Fatalf("after removing one tag of two, the other still names %v (%v)", s.GetImage(), err)
	}
	for _, ref := range []string{nonroot.ID, wh.Ref} {
		if _, err := is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("RemoveImage %s: %v", ref, err)
		}
	}
	// Removing what is gone succeeds (CRI idempotency).
	if _, err := is.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: bb.Ref}}); err != nil {
		t.Fatalf("RemoveImage of a removed image: %v", err)
	}
	list, err = is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Fatalf("ListImages after removing all = %v, %v", list.GetImages(), err)
	}
	// Nothing of the images is left on disk: no blob, no unpacked layer.
	for _, dir := range []string{"blobs", "layers"} {
		if n := countFiles(t, filepath.Join(d.Root, dir)); n != 0 {
			t.Errorf("%d files left in %s after removing every image", n, dir)
		}
	}
}

func TestCRIPullRefusesHostileLayer(t *testing.T) {
	reg := newRegistry(t)
	evil := push(t, hostileImage(t), reg.Host+"/berth/evil:latest")
	d := startDaemon(t, reg)
	_, is := d.CRI()
	ctx := ctxT(t)
	_, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: evil.Ref}})
	if err == nil {
		t.Fatal("pull of an image whose layer escapes its root succeeded")
	}
	if !strings.Contains(err.Error(), "berth-e2e-escape") {
		t.Errorf("error does not name the offending entry: %v", err)
	}
	for _, dir := range []string{d.Root, filepath.Dir(d.Root), "/", "/tmp"} {
		if fileExists(filepath.Join(dir, "berth-e2e-escape")) {
			t.Errorf("hostile layer wrote %s", filepath.Join(dir, "berth-e2e-escape"))
		}
	}
	list, err := is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 0 {
		t.Fatalf("ListImages after refused pull = %v, %v", list.GetImages(), err)
	}
}

func TestCrictlImages(t *testing.T) {
	crictl := tool(t, "crictl", "CRICTL")
	reg := newRegistry(t)
	bb := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	d := startDaemon(t, reg)
	ep := "unix://" + d.CRISocket
	c := func(args ...string) string {
		return run(t, nil, crictl, append([]string{"--runtime-endpoint", ep, "--image-endpoint", ep, "--timeout", "60s"}, args...)...)
	}
	out := c("pull", bb.Ref)
	if !strings.Contains(out, bb.ID) {
		t.Errorf("crictl pull printed %q, want the image ID %s", out, bb.ID)
	}
	out = c("images")
	if !strings.Contains(out, reg.Host+"/berth/busybox") || !strings.Contains(out, bb.ID[7:20]) {
		t.Errorf("crictl images:\n%s", out)
	}
	var inspect struct {
		Status struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(c("inspecti", bb.Ref)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Status.ID != bb.ID || !slices.Contains(inspect.Status.RepoTags, bb.Ref) {
		t.Errorf("crictl inspecti = %+v", inspect.Status)
	}
	if out := c("imagefsinfo"); !strings.Contains(out, d.Root) && !strings.Contains(out, "usedBytes") {
		t.Errorf("crictl imagefsinfo:\n%s", out)
	}
	c("rmi", bb.Ref)
	if out := c("images", "-q"); strings.TrimSpace(out) != "" {
		t.Errorf("crictl images after rmi:\n%s", out)
	}
}

// TestKillDuringPull kills berthd with SIGKILL while it pulls a big image:
// after the restart nothing half-pulled is visible, no partial ingest is
// left, and the same pull succeeds.
func TestKillDuringPull(t *testing.T) {
	reg := newRegistry(t)
	small := push(t, mustImage(t, testimage.Busybox), reg.Host+"/berth/busybox:latest")
	big := push(t, mustImage(t, func() (v1.Image, error) { return testimage.Big(24, 4) }), reg.Host+"/berth/big:latest")
	d := startDaemon(t, reg)
	_, is := d.CRI()
	ctx := ctxT(t)
	if _, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: small.Ref}}); err != nil {
		t.Fatal(err)
	}

	reg.slow.Store(true)
	before := reg.blobBytes.Load()
	pullErr := make(chan error, 1)
	go func() {
		_, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: big.Ref}})
		pullErr <- err
	}()
	// Wait until a few MB of the big image went over the wire.
	deadline := time.Now().Add(60 * time.Second)
	for reg.blobBytes.Load()-before < 4<<20 {
		if time.Now().After(deadline) {
			t.Fatal("pull of the big image did not progress")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.Kill9()
	if err := <-pullErr; err == nil {
		t.Fatal("pull finished although berthd was killed in the middle (registry not slow enough?)")
	}
	reg.slow.Store(false)

	d.Start()
	_, is = d.CRI()
	list, err := is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Images) != 1 || list.Images[0].Id != small.ID {
		t.Fatalf("after kill -9 during a pull, ListImages = %v; want only the busybox image", list.Images)
	}
	s, err := is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: big.Ref}})
	if err != nil || s.Image != nil {
		t.Fatalf("half-pulled image visible: %v, %v", s.GetImage(), err)
	}
	if n := countFiles(t, filepath.Join(d.Root, "ingest")); n != 0 {
		t.Errorf("%d partial ingest files left after restart", n)
	}
	resp, err := is.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: big.Ref}})
	if err != nil || resp.ImageRef != big.ID {
		t.Fatalf("pull after restart = %v, %v", resp, err)
	}
	// The image pulled before the kill is intact: a fresh daemon still lists it
	// and its blobs verify.
	d.Stop()
	d.Start()
	_, is = d.CRI()
	list, err = is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(list.Images) != 2 {
		t.Fatalf("after clean restart ListImages = %v, %v", list.GetImages(), err)
	}
	verifyBlobs(t, filepath.Join(d.Root, "blobs", "sha256"))
}

func condition(st *runtimeapi.RuntimeStatus, typ string) *runtimeapi.RuntimeCondition {
	for _, c := range st.GetConditions() {
		if c.Type == typ {
			return c
		}
	}
	return nil
}

// du returns what `du -s --block-size=1` and `du -s --inodes` say of dir.
func du(t testing.TB, dir string) (bytes, inodes int64) {
	t.Helper()
	parse := func(args ...string) int64 {
		out, err := exec.Command("du", append(args, dir)...).Output()
		if err != nil {
			t.Fatalf("du %v: %v", args, err)
		}
		n, err := strconv.ParseInt(strings.Fields(string(out))[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	return parse("-s", "--block-size=1"), parse("-s", "--inodes")
}

func within(got, want int64, frac float64) bool {
	diff := float64(got - want)
	if diff < 0 {
		diff = -diff
	}
	return diff <= frac*float64(want)
}

func countFiles(t testing.TB, dir string) int {
	t.Helper()
	n := 0
	filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// verifyBlobs re-hashes every blob in the content store.
func verifyBlobs(t testing.TB, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		h, _, err := v1.SHA256(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if h.Hex != e.Name() {
			t.Errorf("blob %s has digest %s", e.Name(), h.Hex)
		}
	}
}
