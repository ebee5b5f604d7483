// Package daemon runs berthd: it opens the engine's stores under one root,
// serves the CRI (gRPC) and the Docker-compatible API (HTTP) on unix
// sockets under the state directory, and shuts them down when its context
// ends. Several daemons with different roots and sockets run side by side;
// two on one root are refused.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-dev/berth/builder"
	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/dockerapi"
	"github.com/berth-dev/berth/engine"
	"github.com/berth-dev/berth/engine/events"
	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

const (
	// maxMsgSize matches the kubelet's CRI client limit.
	maxMsgSize = 16 << 20
	// shutdownGrace is how long in-flight calls may finish after the
	// daemon is told to stop; then they are cut.
	shutdownGrace = 5 * time.Second
)

// Run runs berthd with cfg until ctx ends or a server fails. It returns nil
// after a clean shutdown.
func Run(ctx context.Context, cfg Config) (retErr error) {
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Start-up and reconciliation log through the context like the RPCs.
	ctx = logctx.With(ctx, log)
	// 0711, as containerd's root: a container in a user namespace reaches
	// its rootfs below it as the mapped user. Nothing below is listable.
	if err := makeDir(cfg.Root, 0o711); err != nil {
		return err
	}
	if err := makeDir(cfg.State, 0o711); err != nil {
		return err
	}
	unlock, err := lockRoot(cfg.Root)
	if err != nil {
		return err
	}
	defer unlock()

	store, err := imagestore.Open(ctx, cfg.imageStore())
	if err != nil {
		return fmt.Errorf("open image store in %s: %w", cfg.Root, err)
	}
	defer func() {
		if err := store.Close(); err != nil && retErr == nil {
			retErr = fmt.Errorf("close image store: %w", err)
		}
	}()

	shim, found := findShim(cfg.Runtime.ShimBinary)
	switch {
	case !found && cfg.Runtime.ShimBinary != "":
		return fmt.Errorf("runtime.shim_binary %s: %w", shim, errdefs.ErrNotFound)
	case !found:
		log.WarnContext(ctx, "no berth-shim next to berthd or in PATH; pods and containers cannot start until one is installed")
	}
	podNet, err := cni.New(cfg.cniConfig())
	if err != nil {
		return fmt.Errorf("open cni: %w", err)
	}
	rtCfg := cfg.runtimeConfig(shim)
	// A pod whose creation berthd's death interrupted may be half attached
	// (a lease, a veth, rules): released while its namespace is pinned.
	rtCfg.ReleaseNetwork = func(ctx context.Context, id, netns string) error {
		_, err := podNet.Release(ctx, id, netns)
		return err
	}
	rt, err := runtime.Open(ctx, rtCfg)
	if err != nil {
		return fmt.Errorf("open runtime in %s: %w", cfg.Root, err)
	}
	// Close only stops watching: containers and their shims outlive berthd.
	defer rt.Close()
	if err := rt.Ready(); err != nil && found {
		// CRI Status says so too, until they are installed.
		log.WarnContext(ctx, "pods and containers cannot start until berth-shim and berth-runc are installed side by side", "error", err)
	}
	// Pods whose records are gone (lost in a crash, removed by hand) still
	// hold IP leases, veths and portmap rules, and so may pods whose ADD a
	// crash interrupted (their intents); release them before serving,
	// while no Attach can be in flight. A failure is not fatal: those pods
	// stay recorded and the next start-up tries again.
	var known []string
	for _, s := range rt.ListSandboxes() {
		known = append(known, s.ID)
	}
	if gone, err := podNet.GC(ctx, known); err != nil {
		log.WarnContext(ctx, "release the networks of unknown pods", "released", gone, "error", err)
	} else if len(gone) > 0 {
		log.InfoContext(ctx, "released the networks of unknown pods", "pods", gone)
	}
	// The standalone containers' networks: records, bridges, rules and
	// DNS listeners put back, attachments whose namespace went detached.
	ncfg, err := cfg.networkConfig()
	if err != nil {
		return err
	}
	// Docker's events of every kind go through one bus (GET /events).
	bus := events.New()
	ncfg.Events = bus
	networks, err := network.Open(ctx, ncfg)
	if err != nil {
		return fmt.Errorf("open networks in %s: %w", ncfg.Root, err)
	}
	// Close only stops the DNS listeners: bridges and attachments stay
	// with the containers.
	defer networks.Close()
	allCaps, err := spec.CurrentCapabilities()
	if err != nil {
		return fmt.Errorf("read berthd's capabilities: %w", err)
	}
	// Pod user namespaces need idmapped rootfs layers: probed once.
	userNS := true
	if err := rt.UserNamespacesSupported(); err != nil {
		userNS = false
		log.InfoContext(ctx, "pod user namespaces are not supported", "error", err)
	}
	// The CRI sees only its own pods and containers.
	criRT := rt.Owned(runtime.OwnerCRI)
	streams, err := cri.NewStreamServer(cri.StreamConfig{Address: cfg.StreamAddress, Port: cfg.StreamPort}, criRT)
	if err != nil {
		return err
	}
	defer streams.Close()

	criL, closeCRI, err := listenUnix(cfg.CRISocket())
	if err != nil {
		return err
	}
	defer closeCRI()
	dockerL, closeDocker, err := listenUnix(cfg.DockerSocket())
	if err != nil {
		return err
	}
	defer closeDocker()

	grpcSrv := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxMsgSize),
		grpc.MaxSendMsgSize(maxMsgSize),
		grpc.UnaryInterceptor(cri.UnaryInterceptor(log)),
		grpc.StreamInterceptor(cri.StreamInterceptor(log)),
	)
	criSvc := cri.NewRuntimeService(cri.RuntimeOptions{
		Version:         Version,
		Config:          cfg,
		Pods:            criRT,
		Containers:      criRT,
		Processes:       criRT,
		Stats:           criRT,
		Health:          criRT,
		CgroupDriver:    criRT.CgroupDriver(),
		Network:         podNetwork{podNet},
		Images:          store,
		Streams:         streams,
		AllCapabilities: allCaps,
		Features:        cri.Features{RecursiveReadOnlyMounts: recursiveReadOnlySupported(), UserNamespaces: userNS},
		NRI:             cfg.nriConfig(),
	})
	// Builds a killed berthd left: their containers first (removing one
	// unmounts its snapshot), mounts and temp dirs; their snapshots go
	// with the sweep below.
	bld, err := builder.New(cfg.builderConfig(), store, rt, buildNetwork{networks})
	if err != nil {
		return fmt.Errorf("open builder: %w", err)
	}
	if sw, err := bld.Sweep(ctx); err != nil {
		log.WarnContext(ctx, "remove what interrupted builds left", "containers", sw.Containers, "error", err)
	} else if len(sw.Containers)+len(sw.Dirs) > 0 {
		log.InfoContext(ctx, "removed what interrupted builds left", "containers", sw.Containers, "dirs", sw.Dirs)
	}
	// The standalone engine: Docker's containers on the runtime's
	// "engine" view, so neither front sees the other's objects.
	volumes, err := volume.Open(filepath.Join(cfg.Root, "volumes"))
	if err != nil {
		return err
	}
	logMgr, err := logs.New(logs.Options{Config: cfg.Logging, Logger: log})
	if err != nil {
		return err
	}
	// Forwarders keep their positions for the next berthd.
	defer logMgr.Close()
	engCfg := engine.DefaultConfig()
	engCfg.Root = filepath.Join(cfg.Root, "engine")
	engCfg.AllCapabilities = allCaps
	if found {
		// berth-shim acts as a tini-compatible init under that name.
		engCfg.InitBinary = shim
	}
	eng, err := engine.Open(ctx, engine.Options{
		Config:  engCfg,
		Runtime: rt.Owned(runtime.OwnerEngine),
		Images:  store,
		Volumes: volumes,
		Events:  bus,
		Logs:    logMgr,
		Network: networks,
	})
	if err != nil {
		return fmt.Errorf("open engine in %s: %w", engCfg.Root, err)
	}
	defer eng.Close()
	// The networks forget the containers the engine does not have (a
	// creation a crash interrupted, a record removed by hand).
	if gone, err := networks.GC(ctx, eng.IDs()); err != nil {
		log.WarnContext(ctx, "release the networks of unknown containers", "released", gone, "error", err)
	} else if len(gone) > 0 {
		log.InfoContext(ctx, "released the networks of unknown containers", "containers", gone)
	}

	// Snapshots of containers that never got a record (berthd died inside
	// a creation) would hold their disk space forever. Every front that
	// names snapshots has its say.
	if gone, err := sweepSnapshots(ctx, store, criSvc, bld, eng); err != nil {
		log.WarnContext(ctx, "remove the snapshots no front holds", "removed", gone, "error", err)
	} else if len(gone) > 0 {
		log.InfoContext(ctx, "removed the snapshots no front holds", "snapshots", gone)
	}
	// NRI plugins connect, berthd's own start, and all are synchronized
	// with the pods and containers there are, before the first RPC.
	if err := criSvc.Start(ctx); err != nil {
		return err
	}
	defer criSvc.Close()
	runtimeapi.RegisterImageServiceServer(grpcSrv, cri.NewImageService(store))
	runtimeapi.RegisterRuntimeServiceServer(grpcSrv, criSvc)

	httpSrv := &http.Server{
		Handler: dockerapi.New(store, dockerapi.Options{
			Root: cfg.Root, StateDir: cfg.State, Version: Version,
			CgroupDriver: rt.CgroupDriver(), LoggingDriver: logMgr.Default().Type, Builder: bld, Networks: networks,
			Engine: eng, Volumes: volumes, Events: bus, Logger: log,
		}),
		// Pulls and pushes stream for minutes: only the header read is bounded.
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Handlers (and the builder they call) log through the context.
		BaseContext: func(net.Listener) context.Context { return logctx.With(context.Background(), log) },
	}

	errc := make(chan error, 3)
	go func() {
		if err := streams.Serve(); err != nil {
			errc <- err
		}
	}()
	go func() {
		if err := grpcSrv.Serve(criL); err != nil {
			errc <- fmt.Errorf("serve cri on %s: %w", cfg.CRISocket(), err)
		}
	}()
	go func() {
		if err := httpSrv.Serve(dockerL); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("serve docker api on %s: %w", cfg.DockerSocket(), err)
		}
	}()
	log.InfoContext(ctx, "berthd serving", "version", Version, "root", cfg.Root, "cri", cfg.CRISocket(), "docker", cfg.DockerSocket(), "streaming", streams.Addr(), "shim", shim)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	log.InfoContext(ctx, "berthd shutting down")
	shutdown(context.WithoutCancel(ctx), grpcSrv, httpSrv)
	// Streaming sessions end with berthd; the containers do not.
	streams.Close()
	return serveErr
}

// shutdown stops accepting, lets in-flight calls finish for shutdownGrace,
// then cuts what is left.
func shutdown(ctx context.Context, grpcSrv *grpc.Server, httpSrv *http.Server) {
	ctx, cancel := context.WithTimeout(ctx, shutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() {
		grpcSrv.GracefulStop()
		close(done)
	}()
	if err := httpSrv.Shutdown(ctx); err != nil {
		httpSrv.Close()
	}
	select {
	case <-done:
	case <-ctx.Done():
		grpcSrv.Stop()
		<-done
	}
}

// makeDir creates dir (and parents) and sets its mode, which MkdirAll
// alone leaves to the umask.
func makeDir(dir string, mode os.FileMode) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("set mode of %s: %w", dir, err)
	}
	return nil
}

// lockRoot takes an exclusive flock on <root>/berthd.lock so that a second
// daemon on the same root fails at once instead of corrupting the stores.
// The kernel drops the lock when the process dies, so a crash never leaves
// a stale lock behind.
func lockRoot(root string) (unlock func(), _ error) {
	path := filepath.Join(root, "berthd.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("another berthd is using root %s: %w", root, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	// The PID is for people reading the file; the flock is the lock.
	if err := f.Truncate(0); err == nil {
		f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { f.Close() }, nil
}

// listenUnix listens on a unix socket at path with mode 0660. A socket file
// left by a dead daemon is removed; one that answers, or a file that is not
// a socket, is left alone and refused. The socket is bound under a temporary
// name and renamed into place, so that whoever can connect to path sees it
// with its final mode. The returned func stops listening and removes the
// socket file.
func listenUnix(path string) (net.Listener, func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o711); err != nil {
		return nil, nil, fmt.Errorf("create socket directory for %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, nil, fmt.Errorf("listen on %s: %w: a file that is not a socket is in the way", path, errdefs.ErrAlreadyExists)
		}
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, nil, fmt.Errorf("listen on %s: %w: another process is serving on it", path, errdefs.ErrAlreadyExists)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("listen on %s: check for a live server: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, nil, fmt.Errorf("remove stale socket %s: %w", path, err)
		}
	}
	tmp := path + ".tmp-" + strconv.Itoa(os.Getpid())
	os.Remove(tmp) // a leftover of a crashed daemon that had our PID
	ul, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The listener would unlink its temporary name on Close; close below
	// removes the real one instead.
	ul.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o660); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("set mode of %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ul.Close()
		os.Remove(tmp)
		return nil, nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	return ul, func() {
		ul.Close()
		os.Remove(path)
	}, nil
}
