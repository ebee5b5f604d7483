package monitor

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"

	"golang.org/x/sys/unix"
)

// Init is a container's init for Docker's --init, where berth-shim is
// mounted as /sbin/docker-init and called as tini is: "docker-init --
// cmd args...". It runs the command, forwards every signal it can catch
// to it, reaps the orphans the kernel re-parents to it (it is PID 1) and
// exits with the command's status (128+signal when a signal killed it).
func Init(args []string) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "docker-init: usage: docker-init -- command [args...]")
		return 1
	}
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	sigs := make(chan os.Signal, 32)
	// Every catchable signal; SIGCHLD drives the reaping below.
	signal.Notify(sigs)
	path, err := exec.LookPath(args[0])
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: exec %s: %v\n", args[0], err)
		return 127
	}
	child, err := os.StartProcess(path, args, &os.ProcAttr{Files: []*os.File{os.Stdin, os.Stdout, os.Stderr}, Env: os.Environ()})
	if err != nil {
		fmt.Fprintf(os.Stderr, "docker-init: start %s: %v\n", args[0], err)
		return 126
	}
	for sig := range sigs {
		s, ok := sig.(unix.Signal)
		if !ok {
			continue
		}
		if s != unix.SIGCHLD {
			// SIGURG is the Go runtime's own preemption signal.
			if s != unix.SIGURG {
				_ = child.Signal(s)
			}
			continue
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
			if pid == child.Pid {
				if ws.Signaled() {
					return 128 + int(ws.Signal())
				}
				return ws.ExitStatus()
			}
		}
	}
	return 1
}
