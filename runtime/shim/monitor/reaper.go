package monitor

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// reaper collects the exit status of the shim's children. The shim is a
// child subreaper, so orphans from the container land here too and must be
// reaped. libcontainer, however, waits for its own helper children (the
// first stage of nsenter, hooks) with os/exec while Start, Exec and Destroy
// run; a wait4(-1) at that moment would steal their status and fail the
// operation. So while a libcontainer call is in flight only the pids
// registered with watch are reaped, and the catch-all pass runs after it.
type reaper struct {
	mu      sync.Mutex
	busy    int
	waiters map[int]func(unix.WaitStatus)
}

func newReaper() *reaper {
	r := &reaper{waiters: map[int]func(unix.WaitStatus){}}
	ch := make(chan os.Signal, 32)
	signal.Notify(ch, unix.SIGCHLD)
	go func() {
		for range ch {
			r.reap()
		}
	}()
	return r
}

// do runs a libcontainer call with the catch-all reaping paused.
func (r *reaper) do(fn func() error) error {
	r.mu.Lock()
	r.busy++
	r.mu.Unlock()
	err := fn()
	r.mu.Lock()
	r.busy--
	r.mu.Unlock()
	// SIGCHLDs that arrived meanwhile may have been coalesced: look again.
	r.reap()
	return err
}

// watch registers fn to run, in its own goroutine, with pid's wait status.
// Call it inside do, before the catch-all pass can see pid.
func (r *reaper) watch(pid int, fn func(unix.WaitStatus)) {
	r.mu.Lock()
	r.waiters[pid] = fn
	r.mu.Unlock()
	r.reap()
}

func (r *reaper) reap() {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ws unix.WaitStatus
	for pid, fn := range r.waiters {
		wpid, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		if err == nil && wpid == pid {
			delete(r.waiters, pid)
			go fn(ws)
		}
	}
	if r.busy > 0 {
		return
	}
	for {
		wpid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil || wpid <= 0 {
			return
		}
		if fn, ok := r.waiters[wpid]; ok {
			delete(r.waiters, wpid)
			go fn(ws)
		}
	}
}

// exitCode follows the shell convention used by docker and the CRI.
func exitCode(ws unix.WaitStatus) (code, sig int) {
	if ws.Signaled() {
		return 128 + int(ws.Signal()), int(ws.Signal())
	}
	return ws.ExitStatus(), 0
}
