package cri

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// cleanupTimeout bounds the rollback of a failed RPC; it runs even when the
// caller has gone, so it needs its own limit.
const cleanupTimeout = 2 * time.Minute

// cleanups is a stack of undo steps for a multi-step RPC. Each step that
// makes something pushes its undo; on failure run undoes everything in
// reverse order on a context the caller's cancellation cannot abort, so a
// kubelet timeout never leaks an IP, a netns or a mount.
type cleanups []func(ctx context.Context) error

func (c *cleanups) push(f func(ctx context.Context) error) { *c = append(*c, f) }

// run undoes the steps when *errp is not nil, logging (not returning) the
// undo errors: the caller reports the original failure.
func (c *cleanups) run(ctx context.Context, errp *error) {
	if *errp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		if err := (*c)[i](ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		loggerFrom(ctx).WarnContext(ctx, "rollback after failure left work undone", slog.Any("error", err), slog.Any("cause", *errp))
	}
}
