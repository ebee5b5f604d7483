// Package namespace creates Linux namespaces and pins them by bind mount so
// that they outlive every process in them (as CRI-O's pinns does), and runs
// code inside a pinned namespace from a throw-away OS thread.
//
// Go schedules goroutines on many threads, so a namespace change must happen
// on a locked OS thread. When the work is done the thread returns to its
// original namespaces and is unlocked; if that fails it stays locked, which
// makes the Go runtime end it with the goroutine instead of reusing it in a
// foreign namespace. Restoring matters for the main thread, which the
// runtime cannot end and would otherwise park in a pod's namespaces, where
// /proc/self/ns/* would then point.
package namespace

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Kind is a namespace type this package can pin.
type Kind string

const (
	Net Kind = "net"
	IPC Kind = "ipc"
	UTS Kind = "uts"
	// User namespaces cannot be unshared by a multi-threaded process: pin
	// them from a process born in them with PinProcess.
	User Kind = "user"
)

var cloneFlags = map[Kind]int{Net: unix.CLONE_NEWNET, IPC: unix.CLONE_NEWIPC, UTS: unix.CLONE_NEWUTS}

// PinOptions say what to create and how to set it up. Every step runs on
// the same new thread, inside the new namespaces.
type PinOptions struct {
	// Paths maps each namespace to create to the file it is pinned on; the
	// file is created (its directory must exist).
	Paths map[Kind]string
	// Hostname is set in the new UTS namespace.
	Hostname string
	// Sysctls are written below /proc/sys from inside the new namespaces
	// (keys with dots or slashes). The caller checks that each belongs to a
	// namespace being created.
	Sysctls map[string]string
	// Then, if set, runs last on the thread, inside the new namespaces (for
	// example to start a process that must be born in them).
	Then func() error
}

// Pin creates the namespaces of o.Paths and bind-mounts each onto its path.
// On error nothing stays mounted.
func Pin(o PinOptions) error {
	if len(o.Paths) == 0 {
		if o.Then != nil {
			return o.Then()
		}
		return nil
	}
	if _, ok := o.Paths[UTS]; o.Hostname != "" && !ok {
		// Set outside a new UTS namespace it would rename the host.
		return fmt.Errorf("pin namespaces: a hostname needs a new UTS namespace: %w", errdefs.ErrInvalidArgument)
	}
	flags := 0
	for k := range o.Paths {
		f, ok := cloneFlags[k]
		if !ok {
			return fmt.Errorf("pin namespace %s: %w", k, errdefs.ErrInvalidArgument)
		}
		flags |= f
	}
	return onLockedThread(func() error { return pinOnThread(flags, o) })
}

// onLockedThread runs work on a locked OS thread and returns its error only
// once the thread is back in its original namespaces: the thread may be
// the main one, whose /proc/self/ns/* other code reads, and a caller must
// not go on while it is still inside a pod's namespaces.
func onLockedThread(work func() error) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		orig, err := saveNamespaces()
		if err != nil {
			goruntime.UnlockOSThread() // nothing changed yet
			errc <- err
			return
		}
		err = work()
		if orig.restore() {
			goruntime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

// saved are the thread's original namespaces.
type saved []int

func saveNamespaces() (saved, error) {
	var s saved
	for _, k := range []Kind{Net, IPC, UTS} {
		fd, err := unix.Open("/proc/thread-self/ns/"+string(k), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("save %s namespace: %w", k, err)
		}
		s = append(s, fd)
	}
	return s, nil
}

// restore returns the thread to the saved namespaces and closes them; false
// means the thread is stuck in another namespace.
func (s saved) restore() bool {
	ok := true
	for _, fd := range s {
		if unix.Setns(fd, 0) != nil {
			ok = false
		}
	}
	s.close()
	return ok
}

func (s saved) close() {
	for _, fd := range s {
		unix.Close(fd)
	}
}

func pinOnThread(flags int, o PinOptions) (retErr error) {
	if err := unix.Unshare(flags); err != nil {
		return fmt.Errorf("unshare namespaces: %w", err)
	}
	tid := unix.Gettid()
	var mounted []string
	defer func() {
		if retErr != nil {
			for _, p := range mounted {
				_ = Unpin(p)
			}
		}
	}()
	for k, p := range o.Paths {
		if err := bindNS(fmt.Sprintf("/proc/self/task/%d/ns/%s", tid, k), p); err != nil {
			return fmt.Errorf("pin %s namespace on %s: %w", k, p, err)
		}
		mounted = append(mounted, p)
	}
	_, hasNet := o.Paths[Net]
	if err := applySettings(hasNet, o.Hostname, o.Sysctls); err != nil {
		return err
	}
	if o.Then != nil {
		return o.Then()
	}
	return nil
}

// applySettings runs on a thread inside the pod's namespaces.
func applySettings(hasNet bool, hostname string, sysctls map[string]string) error {
	if hasNet {
		// A new network namespace has its loopback down; pods expect it up
		// even before (or without) CNI's loopback plugin.
		if err := loopbackUp(); err != nil {
			return err
		}
	}
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("set hostname %q: %w", hostname, err)
		}
	}
	for k, v := range sysctls {
		// /proc/sys/net and the IPC sysctls resolve to the namespaces of the
		// thread that opens them.
		p := filepath.Join("/proc/sys", strings.ReplaceAll(k, ".", "/"))
		if strings.Contains(k, "/") {
			p = filepath.Join("/proc/sys", k)
		}
		if err := os.WriteFile(p, []byte(v), 0); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("set sysctl %s: %w: %w", k, errdefs.ErrInvalidArgument, err)
			}
			return fmt.Errorf("set sysctl %s=%s: %w", k, v, err)
		}
	}
	return nil
}

// PinProcess bind-mounts the namespaces of process pid onto paths (files
// it creates), for namespaces made by starting a process in them (a user
// namespace with its mappings, and the namespaces it owns). On error
// nothing stays mounted.
func PinProcess(pid int, paths map[Kind]string) (retErr error) {
	var mounted []string
	defer func() {
		if retErr != nil {
			for _, p := range mounted {
				_ = Unpin(p)
			}
		}
	}()
	for k, p := range paths {
		if err := bindNS(fmt.Sprintf("/proc/%d/ns/%s", pid, k), p); err != nil {
			return fmt.Errorf("pin %s namespace of %d: %w", k, pid, err)
		}
		mounted = append(mounted, p)
	}
	return nil
}

func bindNS(src, dst string) error {
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return err
	}
	return nil
}

// Configure enters the pinned namespaces of paths (user excluded: root of
// the host's user namespace may act in every namespace below it) and sets
// the loopback up (with a network namespace), the hostname (with a UTS
// namespace) and the sysctls.
func Configure(paths map[Kind]string, hostname string, sysctls map[string]string) error {
	return onLockedThread(func() error {
		for _, k := range []Kind{Net, IPC, UTS} {
			p, ok := paths[k]
			if !ok {
				continue
			}
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("enter %s namespace %s: %w", k, p, err)
			}
			err = unix.Setns(fd, 0)
			unix.Close(fd)
			if err != nil {
				return fmt.Errorf("enter %s namespace %s: %w", k, p, err)
			}
		}
		_, hasNet := paths[Net]
		if _, ok := paths[UTS]; !ok {
			hostname = ""
		}
		return applySettings(hasNet, hostname, sysctls)
	})
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	return nil
}

// Unpin unmounts a pinned namespace and removes its file; a path that is
// gone or not mounted is fine.
func Unpin(path string) error {
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("unpin namespace %s: %w", path, err)
	}
	return nil
}

// Do runs fn on a new OS thread that has joined the namespace pinned at
// path (any kind setns accepts without a single-threaded caller: net, ipc,
// uts). Sockets fn creates belong to that namespace for good.
func Do(path string, fn func() error) error {
	return onLockedThread(func() error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("enter namespace %s: %w: %w", path, errdefs.ErrNotFound, err)
			}
			return fmt.Errorf("enter namespace %s: %w", path, err)
		}
		err = unix.Setns(fd, 0)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter namespace %s: %w", path, err)
		}
		return fn()
	})
}

// Pinned says whether path is a namespace file (a pin that survived).
func Pinned(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}
