package runtime

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/berth-dev/berth/internal/logctx"
)

func TestStepsLogThroughContextLogger(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := logctx.With(t.Context(), log.With("rpc", "CreateContainer"))
	st := startSteps(ctx, "create container")
	st.done("mount")
	st.done("spec")
	st.log("c1")
	out := buf.String()
	for _, want := range []string{`msg="create container timings"`, "rpc=CreateContainer", "id=c1", "total=", "mount=", "spec="} {
		if !strings.Contains(out, want) {
			t.Errorf("log line %q lacks %q", out, want)
		}
	}

	// Without a logger at debug level in the context, nothing is timed.
	info := slog.New(slog.NewTextHandler(&buf, nil))
	if st := startSteps(logctx.With(t.Context(), info), "x"); st != nil {
		t.Error("steps timed although the context's logger is not at debug level")
	}
	if st := startSteps(t.Context(), "x"); st != nil {
		t.Error("steps timed without a logger in the context")
	}
}
