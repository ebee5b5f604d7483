// Package logctx carries a *slog.Logger in a context.Context, so that
// libraries (runtime, cni, imagestore) log with the logger of the request
// that called them (rpc name, request id) and log nowhere until a binary
// puts one there.
package logctx

import (
	"context"
	"log/slog"
)

type key struct{}

var discard = slog.New(slog.DiscardHandler)

// With returns ctx carrying log.
func With(ctx context.Context, log *slog.Logger) context.Context {
	return context.WithValue(ctx, key{}, log)
}

// From returns the logger in ctx, or one that discards everything: a
// library never falls back to a global logger.
func From(ctx context.Context) *slog.Logger {
	if l, ok := ctx.Value(key{}).(*slog.Logger); ok && l != nil {
		return l
	}
	return discard
}
