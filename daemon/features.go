package daemon

import (
	"errors"

	"golang.org/x/sys/unix"
)

// recursiveReadOnlySupported reports whether the kernel has
// mount_setattr(2) (Linux 5.12), which runc needs for "rro" mounts. The
// probe passes an invalid fd: a kernel with the syscall answers EBADF or
// EINVAL, one without answers ENOSYS. TestPodLifecycleRoot proves an rro
// mount really is read-only in its submounts.
func recursiveReadOnlySupported() bool {
	err := unix.MountSetattr(-1, "", 0, &unix.MountAttr{})
	return !errors.Is(err, unix.ENOSYS)
}
