package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"

	"github.com/berth-dev/berth/internal/logctx"
)

// withLogger returns ctx carrying log for the handlers below the
// interceptor and for the runtime and image store they call (logctx).
func withLogger(ctx context.Context, log *slog.Logger) context.Context {
	return logctx.With(ctx, log)
}

// loggerFrom returns the logger the interceptor put in ctx, or one that
// discards everything.
func loggerFrom(ctx context.Context) *slog.Logger {
	return logctx.From(ctx)
}

// UnaryInterceptor is the one place where CRI unary calls get their logger
// (log with the rpc name and a request id), their log line, panic recovery and the mapping of
// errdefs classes to gRPC codes. A nil log discards.
func UnaryInterceptor(log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (resp any, err error) {
		ctx, done := startRPC(ctx, log, info.FullMethod)
		defer func() { err = done(recover(), err) }()
		return handler(ctx, req)
	}
}

// StreamInterceptor does for streaming calls what UnaryInterceptor does.
func StreamInterceptor(log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) (err error) {
		ctx, done := startRPC(ss.Context(), log, info.FullMethod)
		defer func() { err = done(recover(), err) }()
		return handler(srv, &loggedStream{ServerStream: ss, ctx: ctx})
	}
}

// startRPC puts the RPC's logger in ctx and returns the function that ends
// the call: it turns a panic into an Internal error, logs, and maps err.
func startRPC(ctx context.Context, log *slog.Logger, method string) (context.Context, func(panicked any, err error) error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("rpc", method, "req", requestID())
	ctx = withLogger(ctx, log)
	start := time.Now()
	return ctx, func(panicked any, err error) error {
		if panicked != nil {
			log.ErrorContext(ctx, "panic in rpc", "panic", panicked, "stack", string(debug.Stack()))
			err = fmt.Errorf("%s: panic: %v: %w", method, panicked, errdefs.ErrInternal)
		}
		d := time.Since(start)
		if err != nil {
			log.InfoContext(ctx, "rpc failed", "duration", d, "error", err)
			return errgrpc.ToGRPC(err)
		}
		log.DebugContext(ctx, "rpc done", "duration", d)
		return nil
	}
}

// requestID returns a short random id that ties together the log lines of
// one call.
func requestID() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// loggedStream gives a stream handler the context carrying its logger.
type loggedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *loggedStream) Context() context.Context { return s.ctx }
