// Package steps times the steps of one operation and logs them in one
// debug line on the context's logger (berthd --log-level debug), to show
// which step of a start, a stop or a removal costs what. Disabled, a
// Timer is nil and costs a level check.
package steps

import (
	"context"
	"log/slog"
	"time"

	"github.com/berth-dev/berth/internal/logctx"
)

// Timer times one operation's steps.
type Timer struct {
	ctx   context.Context
	op    string
	t0    time.Time
	last  time.Time
	attrs []any
}

// Start returns a Timer for op, or nil when ctx's logger does not log at
// debug level. Every method works on a nil Timer.
func Start(ctx context.Context, op string) *Timer {
	if !logctx.From(ctx).Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	now := time.Now()
	return &Timer{ctx: ctx, op: op, t0: now, last: now}
}

// Done records the time since the previous step under name.
func (t *Timer) Done(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.attrs = append(t.attrs, slog.Duration(name, now.Sub(t.last)))
	t.last = now
}

// Log writes "<op> timings" with the total and the steps; attrs name what
// the operation was on (id, network, ...).
func (t *Timer) Log(attrs ...any) {
	if t == nil {
		return
	}
	logctx.From(t.ctx).DebugContext(t.ctx, t.op+" timings", append(append(attrs, "total", time.Since(t.t0)), t.attrs...)...)
}
