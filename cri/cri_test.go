package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/testutil"
)

// clients are CRI clients connected to a real gRPC server on a unix socket.
type clients struct {
	images  runtimeapi.ImageServiceClient
	runtime runtimeapi.RuntimeServiceClient
}

// serve starts the CRI services over images on a unix socket in t.TempDir
// and returns clients and the log the interceptor writes.
func serve(t *testing.T, images imageStore) (clients, *testutil.Buffer) {
	t.Helper()
	return serveRuntime(t, images, &fakeRuntime{})
}

// serveRuntime is serve with rt as every part of the runtime.
func serveRuntime(t *testing.T, images imageStore, rt *fakeRuntime) (clients, *testutil.Buffer) {
	t.Helper()
	logs := &testutil.Buffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	sock := filepath.Join(t.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.UnaryInterceptor(UnaryInterceptor(log)), grpc.StreamInterceptor(StreamInterceptor(log)))
	runtimeapi.RegisterImageServiceServer(srv, NewImageService(images))
	runtimeapi.RegisterRuntimeServiceServer(srv, NewRuntimeService(withRuntime(RuntimeOptions{Version: "0.0.0-test", Config: map[string]string{"root": "/x"}}, rt)))
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return clients{images: runtimeapi.NewImageServiceClient(conn), runtime: runtimeapi.NewRuntimeServiceClient(conn)}, logs
}

// fakeStore is an in-memory imageStore for the translation logic; the
// behaviour against a real store and registry is in store_test.go.
type fakeStore struct {
	mu       sync.Mutex
	images   map[string]*imagestore.Image // by every name and ID
	pullErr  error
	panic    bool
	lastAuth *imagestore.Auth
}

func (f *fakeStore) Pull(_ context.Context, ref string, opts imagestore.PullOptions) (*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.panic {
		panic("boom")
	}
	f.lastAuth = opts.Auth
	if f.pullErr != nil {
		return nil, f.pullErr
	}
	img, ok := f.images[ref]
	if !ok {
		return nil, fmt.Errorf("fetch %s: %w", ref, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *fakeStore) Get(_ context.Context, name string) (*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	img, ok := f.images[name]
	if !ok {
		return nil, fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
	}
	return img, nil
}

func (f *fakeStore) List(context.Context) ([]*imagestore.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[*imagestore.Image]bool{}
	var out []*imagestore.Image
	for _, img := range f.images {
		if !seen[img] {
			seen[img] = true
			out = append(out, img)
		}
	}
	return out, nil
}

func (f *fakeStore) Remove(_ context.Context, name string, _ imagestore.RemoveOptions) (imagestore.Removed, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.images[name]; !ok {
		return imagestore.Removed{}, fmt.Errorf("image %s: %w", name, errdefs.ErrNotFound)
	}
	delete(f.images, name)
	return imagestore.Removed{Untagged: []string{name}}, nil
}

func (f *fakeStore) Usage(context.Context) (imagestore.Usage, error) {
	return imagestore.Usage{Mountpoint: "/var/lib/berth", Bytes: 1234, Inodes: 56}, nil
}

func newFake() *fakeStore {
	id := digest.FromString("config")
	img := &imagestore.Image{
		ID:          id,
		RepoTags:    []string{"127.0.0.1:5000/app:1"},
		RepoDigests: []string{"127.0.0.1:5000/app@" + digest.FromString("manifest").String()},
		Size:        4242,
		Config:      ocispec.Image{Config: ocispec.ImageConfig{User: "www-data:1004"}},
		Layers:      []imagestore.Layer{{ChainID: digest.FromString("chain")}},
	}
	return &fakeStore{images: map[string]*imagestore.Image{
		"127.0.0.1:5000/app:1": img,
		id.String():            img,
	}}
}

func TestErrorsMapToCodes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		pullErr error
		panic   bool
		image   string
		handler string
		want    codes.Code
	}{
		{name: "empty spec", image: " ", want: codes.InvalidArgument},
		{name: "unknown runtime handler", image: "127.0.0.1:5000/app:1", handler: "kata", want: codes.InvalidArgument},
		{name: "not found", image: "127.0.0.1:5000/nope:1", want: codes.NotFound},
		{name: "unavailable", image: "x", pullErr: fmt.Errorf("dial: %w", errdefs.ErrUnavailable), want: codes.Unavailable},
		{name: "unauthenticated", image: "x", pullErr: fmt.Errorf("token: %w", errdefs.ErrUnauthenticated), want: codes.Unauthenticated},
		{name: "not implemented", image: "x", pullErr: fmt.Errorf("pull: %w", errdefs.ErrNotImplemented), want: codes.Unimplemented},
		{name: "deadline", image: "x", pullErr: fmt.Errorf("layer stalled: %w", context.DeadlineExceeded), want: codes.DeadlineExceeded},
		{name: "unclassified", image: "x", pullErr: errors.New("mystery"), want: codes.Unknown},
		{name: "panic", image: "x", panic: true, want: codes.Internal},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			f.pullErr, f.panic = tc.pullErr, tc.panic
			c, logs := serve(t, f)
			_, err := c.images.PullImage(t.Context(), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tc.image, RuntimeHandler: tc.handler}})
			if got := status.Code(err); got != tc.want {
				t.Fatalf("code = %v (%v), want %v", got, err, tc.want)
			}
			if !strings.Contains(logs.String(), "rpc=/runtime.v1.ImageService/PullImage") || !strings.Contains(logs.String(), "error=") {
				t.Errorf("failed rpc not logged with its name and error:\n%s", logs)
			}
		})
	}
}

func TestPullPassesAuthAndReturnsImageID(t *testing.T) {
	f := newFake()
	c, _ := serve(t, f)
	resp, err := c.images.PullImage(t.Context(), &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:5000/app:1"},
		Auth:  &runtimeapi.AuthConfig{Username: "u", Password: "p", RegistryToken: "tok"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromString("config").String(); resp.ImageRef != want {
		t.Errorf("image_ref = %q, want the config digest %q", resp.ImageRef, want)
	}
	if want := (imagestore.Auth{Username: "u", Password: "p", RegistryToken: "tok"}); f.lastAuth == nil || *f.lastAuth != want {
		t.Errorf("auth passed to the store = %+v, want %+v", f.lastAuth, want)
	}
}

func TestImageStatusAndList(t *testing.T) {
	c, _ := serve(t, newFake())
	ctx := t.Context()

	st, err := c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:5000/missing:1"}})
	if err != nil || st.Image != nil {
		t.Fatalf("status of unknown image = %v, %v; want empty response and no error", st, err)
	}

	st, err = c.images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:5000/app:1"}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	img := st.Image
	if img.Id != digest.FromString("config").String() || img.Size != 4242 || img.Username != "www-data" || img.Uid != nil || img.Spec.GetImage() != img.Id {
		t.Errorf("image = %v", img)
	}
	if !strings.Contains(st.Info["info"], `"User":"www-data:1004"`) || !strings.Contains(st.Info["info"], digest.FromString("chain").String()) {
		t.Errorf("verbose info lacks the config user or chain ID: %s", st.Info["info"])
	}

	all, err := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil || len(all.Images) != 1 {
		t.Fatalf("list = %v, %v; want one image", all, err)
	}
	none, err := c.images.ListImages(ctx, &runtimeapi.ListImagesRequest{Filter: &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: "other"}}})
	if err != nil || len(none.Images) != 0 {
		t.Fatalf("list filtered by unknown name = %v, %v; want empty", none, err)
	}
}

func TestRemoveMissingImageSucceeds(t *testing.T) {
	c, _ := serve(t, newFake())
	if _, err := c.images.RemoveImage(t.Context(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: "127.0.0.1:5000/missing:1"}}); err != nil {
		t.Fatalf("remove of a missing image: %v", err)
	}
	if _, err := c.images.RemoveImage(t.Context(), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("remove with empty spec: %v, want InvalidArgument", err)
	}
}

func TestImageFsInfo(t *testing.T) {
	c, _ := serve(t, newFake())
	resp, err := c.images.ImageFsInfo(t.Context(), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) != 1 || len(resp.ContainerFilesystems) != 0 {
		t.Fatalf("fsinfo = %v", resp)
	}
	fs := resp.ImageFilesystems[0]
	if fs.Timestamp <= 0 || fs.FsId.GetMountpoint() != "/var/lib/berth" || fs.UsedBytes.GetValue() != 1234 || fs.InodesUsed.GetValue() != 56 {
		t.Errorf("fsinfo = %v", fs)
	}
}

func TestVersionAndStatus(t *testing.T) {
	c, _ := serve(t, newFake())
	v, err := c.runtime.Version(t.Context(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "0.1.0" || v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != "0.0.0-test" {
		t.Errorf("version = %v", v)
	}
	st, err := c.runtime.Status(t.Context(), &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c
	}
	if !conds[runtimeapi.RuntimeReady].GetStatus() {
		t.Errorf("runtime not ready: %v", st)
	}
	if n := conds[runtimeapi.NetworkReady]; n == nil || n.Status || n.Reason != "NetworkPluginNotReady" || n.Message == "" {
		t.Errorf("network condition = %v; want not ready with a reason and message", n)
	}
	if st.Info["config"] != `{"root":"/x"}` {
		t.Errorf("verbose config = %q", st.Info["config"])
	}
	// Without its shim the runtime is not ready, and says why.
	c, _ = serveRuntime(t, newFake(), &fakeRuntime{notReady: fmt.Errorf("runtime not ready: /usr/bin/berth-runc: %w", errdefs.ErrNotFound)})
	st, err = c.runtime.Status(t.Context(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cond := range st.Status.Conditions {
		conds[cond.Type] = cond
	}
	if r := conds[runtimeapi.RuntimeReady]; r.Status || r.Reason != "RuntimeBinariesMissing" || !strings.Contains(r.Message, "berth-runc") {
		t.Errorf("runtime condition without berth-runc = %v; want not ready, naming it", r)
	}
	// A pod without metadata is refused before the runtime is asked.
	if _, err := c.runtime.RunPodSandbox(t.Context(), &runtimeapi.RunPodSandboxRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("RunPodSandbox without metadata: %v, want InvalidArgument", err)
	}
}

func TestUserFromConfig(t *testing.T) {
	for _, tc := range []struct {
		user     string
		uid      int64
		hasUID   bool
		username string
	}{
		{user: ""},
		{user: "1003:1004", uid: 1003, hasUID: true},
		{user: "0", uid: 0, hasUID: true},
		{user: "www-data:1004", username: "www-data"},
		{user: "nobody", username: "nobody"},
		{user: ":1004"},
	} {
		uid, name := userFromConfig(tc.user)
		if (uid != nil) != tc.hasUID || (uid != nil && *uid != tc.uid) || name != tc.username {
			t.Errorf("userFromConfig(%q) = %v, %q; want uid %v (set %v), %q", tc.user, uid, name, tc.uid, tc.hasUID, tc.username)
		}
	}
}

func TestStreamImages(t *testing.T) {
	c, logs := serve(t, newFake())
	stream, err := c.images.StreamImages(t.Context(), &runtimeapi.StreamImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var n int
	for {
		resp, err := stream.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				t.Fatal(err)
			}
			break
		}
		n += len(resp.Images)
	}
	if n != 1 {
		t.Errorf("streamed %d images, want 1", n)
	}
	if !strings.Contains(logs.String(), "rpc=/runtime.v1.ImageService/StreamImages") {
		t.Errorf("stream rpc not logged:\n%s", logs)
	}
}
