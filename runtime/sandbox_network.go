package runtime

import (
	"context"
	"fmt"

	"github.com/berth-dev/berth/internal/logctx"
)

// SandboxNetwork connects a pod's network namespace to the node's network:
// the caller's CNI ADD and DEL. Given in SandboxConfig.Network, it lets
// CreateSandbox attach the pod as soon as its network namespace is pinned,
// while it writes the pod's files, mounts /dev/shm and starts the pause
// holder: the CNI ADD is most of a pod's start, and the rest then costs
// next to nothing.
type SandboxNetwork interface {
	// Attach returns the pod's IPs, primary first; on error it has undone
	// what it did.
	Attach(ctx context.Context, netns string) ([]string, error)
	// Detach undoes Attach.
	Detach(ctx context.Context, netns string) error
}

// podAttach is one CreateSandbox's Attach running in the background.
type podAttach struct {
	net   SandboxNetwork
	netns string
	// started is set on the goroutine that pins the namespaces and read
	// after namespace.Pin returned.
	started bool
	undone  bool
	done    chan struct{}
	ips     []string
	err     error
}

func (a *podAttach) start(ctx context.Context) {
	if a == nil || a.started {
		return
	}
	a.started = true
	go func() {
		defer close(a.done)
		a.ips, a.err = a.net.Attach(ctx, a.netns)
	}()
}

// wait returns Attach's result; not started, it returns nothing.
func (a *podAttach) wait() ([]string, error) {
	if a == nil || !a.started {
		return nil, nil
	}
	<-a.done
	if a.err != nil {
		return nil, fmt.Errorf("attach network: %w", a.err)
	}
	return a.ips, nil
}

// undo detaches a pod whose creation failed after it was attached, before
// its network namespace is unpinned (plugins such as bridge with ipMasq
// need the namespace for their DEL). Only the first call acts.
func (a *podAttach) undo(ctx context.Context) {
	if a == nil || !a.started || a.undone {
		return
	}
	a.undone = true
	<-a.done
	if a.err != nil {
		return
	}
	if err := a.net.Detach(ctx, a.netns); err != nil {
		logctx.From(ctx).WarnContext(ctx, "undo sandbox network", "netns", a.netns, "error", err)
	}
}
