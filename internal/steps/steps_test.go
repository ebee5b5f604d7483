package steps

import (
	"bytes"
	"context"
	"log/slog"
	"regexp"
	"testing"

	"github.com/berth-dev/berth/internal/logctx"
)

func TestTimer(t *testing.T) {
	var buf bytes.Buffer
	ctx := logctx.With(t.Context(), slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	st := Start(ctx, "remove network")
	st.Done("rules")
	st.Done("bridge")
	st.Log("network", "n1")
	if !regexp.MustCompile(`msg="remove network timings" network=n1 total=[0-9.]+[nµm]?s rules=[0-9.]+[nµm]?s bridge=[0-9.]+[nµm]?s\n$`).Match(buf.Bytes()) {
		t.Errorf("logged %q", buf.String())
	}

	// Below debug level nothing is timed or logged.
	buf.Reset()
	ctx = logctx.With(t.Context(), slog.New(slog.NewTextHandler(&buf, nil)))
	st = Start(ctx, "x")
	if st != nil {
		t.Fatal("a timer at info level")
	}
	st.Done("a")
	st.Log()
	Start(context.Background(), "y").Log()
	if buf.Len() != 0 {
		t.Errorf("logged %q at info level", buf.String())
	}
}
