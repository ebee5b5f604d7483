package shim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/berth-dev/berth/runtime/shim/wire"
)

// KillStray kills the shim that wrote stateDir's pid file if it still
// runs: a shim berthd can no longer talk to, because berthd died while
// the shim was still creating its container (it writes its pid before it
// listens). Left alone it would finish the creation for nobody. Only a
// berth-shim process is killed (the pid may have been reused since); it
// returns once the process is gone. A missing pid file or process is no
// error.
func KillStray(ctx context.Context, stateDir string) error {
	b, err := os.ReadFile(filepath.Join(stateDir, wire.PidName))
	if err != nil {
		return nil
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
	if err != nil || pid <= 1 {
		return nil
	}
	if !isShim(pid) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return nil
	}
	for isShim(pid) {
		// Not our child (re-parented when berthd died): wait for init to
		// reap it.
		select {
		case <-ctx.Done():
			return fmt.Errorf("kill stray shim %d: %w", pid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

// isShim reports whether pid is a live (not zombie) berth-shim.
func isShim(pid int) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil || string(bytes.TrimSpace(comm)) != "berth-shim" {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesized command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return false
	}
	return true
}
