package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/internal/logctx"
)

// steps times the steps of one container operation of the engine and logs them in
// one debug line on the context's logger (berthd --log-level debug), to show which step of a docker run
// costs what. Disabled, it costs a level check.
type steps struct {
	ctx   context.Context
	op    string
	t0    time.Time
	last  time.Time
	attrs []any
}

func startSteps(ctx context.Context, op string) *steps {
	if !logctx.From(ctx).Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	now := time.Now()
	return &steps{ctx: ctx, op: op, t0: now, last: now}
}

// done records the time since the previous step under name.
func (s *steps) done(name string) {
	if s == nil {
		return
	}
	now := time.Now()
	s.attrs = append(s.attrs, slog.Duration(name, now.Sub(s.last)))
	s.last = now
}

// log writes the line with the total; id names the container.
func (s *steps) log(id string) {
	if s == nil {
		return
	}
	logctx.From(s.ctx).DebugContext(s.ctx, s.op+" timings", append([]any{"id", id, "total", time.Since(s.t0)}, s.attrs...)...)
}
