package monitor

import (
	"fmt"
	"io"
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// goAheadFD is the pause holder's fd 3: the read end of a pipe on which
// berthd writes one byte once the holder's PID is on record.
const goAheadFD = 3

// Pause holds a pod's shared PID namespace (or its user namespace): it
// sleeps, reaps the orphans the kernel re-parents to it (it is PID 1 there,
// or a subreaper outside one) and returns on SIGTERM or SIGINT. As PID 1 it
// gets no signal it has no handler for, hence the explicit Notify.
//
// It holds nothing for good before berthd's go-ahead on goAheadFD. When
// that pipe closes first, berthd died (or gave up) before it put the
// holder's PID on record, so a restarted berthd could never find this
// process to kill it: it exits at once, and the namespaces only it held
// go with it. It returns the exit code.
func Pause() int {
	gate := os.NewFile(goAheadFD, "go-ahead")
	var b [1]byte
	_, err := gate.Read(b[:])
	gate.Close()
	if err == io.EOF {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-shim pause: read the go-ahead on fd %d (berthd passes a pipe there): %v\n", goAheadFD, err)
		return 2
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGTERM, unix.SIGINT, unix.SIGCHLD)
	for sig := range ch {
		if sig != unix.SIGCHLD {
			return 0
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
	return 0
}
