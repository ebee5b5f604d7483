package logctx

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestFrom(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := With(t.Context(), log.With("rpc", "x"))
	From(ctx).DebugContext(ctx, "hello")
	if !strings.Contains(buf.String(), "msg=hello rpc=x") {
		t.Fatalf("logged %q, want the message with the context logger's attrs", buf.String())
	}
	if From(context.Background()).Enabled(ctx, slog.LevelError) {
		t.Fatal("a context without a logger must discard")
	}
}
