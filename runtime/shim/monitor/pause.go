package monitor

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// Pause holds a pod's shared PID namespace: it sleeps, reaps the orphans
// the kernel re-parents to it (it is PID 1 there, or a subreaper outside
// one) and returns on SIGTERM or SIGINT. As PID 1 it gets no signal it has
// no handler for, hence the explicit Notify.
func Pause() {
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	for sig := range ch {
		if sig != unix.SIGCHLD {
			return
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
		}
	}
}
