package builder

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/internal/logctx"
)

// timings times the parts of one build step and logs them in one debug
// line (berthd --log-level debug); disabled, it costs a level check.
type timings struct {
	ctx   context.Context
	op    string
	t0    time.Time
	last  time.Time
	attrs []any
}

func startTimings(ctx context.Context, op string) *timings {
	if !logctx.From(ctx).Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	now := time.Now()
	return &timings{ctx: ctx, op: op, t0: now, last: now}
}

func (t *timings) done(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.attrs = append(t.attrs, slog.Duration(name, now.Sub(t.last)))
	t.last = now
}

func (t *timings) log(attrs ...any) {
	if t == nil {
		return
	}
	logctx.From(t.ctx).DebugContext(t.ctx, t.op+" timings", append(append(attrs, "total", time.Since(t.t0)), t.attrs...)...)
}
