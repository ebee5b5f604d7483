package cri

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-dev/berth/runtime"
)

// StreamConfig configures the CRI streaming server.
type StreamConfig struct {
	// Address is the IP to listen on; the kubelet proxies the URLs, so
	// loopback is enough (and exposes nothing).
	Address string
	// Port is the TCP port; "0" picks a free one.
	Port string
	// IdleTimeout closes a session without traffic; 0 means 4 hours, the
	// kubelet's default.
	IdleTimeout time.Duration
}

// streamRuntime is what exec/attach/port-forward sessions need.
type streamRuntime interface {
	Exec(ctx context.Context, id string, o runtime.ExecOptions) (int, error)
	Attach(ctx context.Context, id string, s runtime.Streams) error
	PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error
}

// StreamServer is the CRI streaming server (k8s.io/cri-streaming): the
// Exec, Attach and PortForward RPCs return one-time URLs on it, and the
// client (crictl, the kubelet's proxy) speaks SPDY or WebSocket to them.
type StreamServer struct {
	srv  streaming.Server
	http *http.Server
	l    net.Listener
}

// NewStreamServer listens on cfg's address. The URLs it hands out carry
// the real port even when cfg.Port is "0" (the library's own Start would
// set it racily after serving begins).
func NewStreamServer(cfg StreamConfig, rt streamRuntime) (*StreamServer, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(cfg.Address, cfg.Port))
	if err != nil {
		return nil, fmt.Errorf("listen for streaming on %s: %w", net.JoinHostPort(cfg.Address, cfg.Port), err)
	}
	sc := streaming.DefaultConfig
	sc.Addr = l.Addr().String()
	sc.BaseURL = &url.URL{Scheme: "http", Host: l.Addr().String()}
	if cfg.IdleTimeout > 0 {
		sc.StreamIdleTimeout = cfg.IdleTimeout
	}
	srv, err := streaming.NewServer(sc, streamAdapter{rt})
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("create streaming server: %w", err)
	}
	return &StreamServer{
		srv:  srv,
		http: &http.Server{Handler: srv, ReadHeaderTimeout: 30 * time.Second},
		l:    l,
	}, nil
}

// Addr is where the server listens.
func (s *StreamServer) Addr() string { return s.l.Addr().String() }

// Serve serves until Close; it then returns nil.
func (s *StreamServer) Serve() error {
	if err := s.http.Serve(s.l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve streaming on %s: %w", s.Addr(), err)
	}
	return nil
}

// Close stops serving and cuts the open sessions.
func (s *StreamServer) Close() error { return s.http.Close() }

// The URL getters keep the library's gRPC status errors out of handlers:
// its validation errors become InvalidArgument, the rest Unavailable.
func (s *StreamServer) exec(req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	resp, err := s.srv.GetExec(req)
	return resp, streamErr(err)
}

func (s *StreamServer) attach(req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	resp, err := s.srv.GetAttach(req)
	return resp, streamErr(err)
}

func (s *StreamServer) portForward(req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	resp, err := s.srv.GetPortForward(req)
	return resp, streamErr(err)
}

func streamErr(err error) error {
	if err == nil {
		return nil
	}
	// The library only fails on invalid requests and a full token cache.
	if errors.Is(err, errdefs.ErrInvalidArgument) || isInvalid(err) {
		return fmt.Errorf("%w: %s", errdefs.ErrInvalidArgument, statusMessage(err))
	}
	return fmt.Errorf("%w: %s", errdefs.ErrUnavailable, statusMessage(err))
}

// streamAdapter implements streaming.Runtime on the runtime manager.
type streamAdapter struct{ rt streamRuntime }

var _ streaming.Runtime = streamAdapter{}

func (a streamAdapter) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	sizes, stop := convertResize(resize)
	defer stop()
	code, err := a.rt.Exec(ctx, id, runtime.ExecOptions{Cmd: cmd, TTY: tty, Streams: streams(in, out, errw, sizes)})
	if err != nil {
		return err
	}
	if code != 0 {
		// crictl and the kubelet read the exit code from this type only.
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (a streamAdapter) Attach(ctx context.Context, id string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	sizes, stop := convertResize(resize)
	defer stop()
	return a.rt.Attach(ctx, id, streams(in, out, errw, sizes))
}

func (a streamAdapter) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	return a.rt.PortForward(ctx, sandboxID, port, stream)
}

// streams keeps absent streams nil interfaces: a typed nil would look
// connected to the runtime.
func streams(in io.Reader, out, errw io.WriteCloser, sizes <-chan runtime.Size) runtime.Streams {
	s := runtime.Streams{Resize: sizes}
	if in != nil {
		s.Stdin = in
	}
	if out != nil {
		s.Stdout = out
	}
	if errw != nil {
		s.Stderr = errw
	}
	return s
}

// convertResize forwards terminal sizes in the runtime's type until the
// session ends.
func convertResize(in <-chan remotecommand.TerminalSize) (<-chan runtime.Size, func()) {
	if in == nil {
		return nil, func() {}
	}
	out := make(chan runtime.Size, 1)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- runtime.Size{Width: sz.Width, Height: sz.Height}:
				case <-done:
					return
				}
			}
		}
	}()
	return out, func() { close(done) }
}
