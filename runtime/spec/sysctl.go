package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// ipcSysctls are the kernel.* parameters the IPC namespace owns.
var ipcSysctls = map[string]bool{
	"kernel.msgmax":          true,
	"kernel.msgmnb":          true,
	"kernel.msgmni":          true,
	"kernel.sem":             true,
	"kernel.shmall":          true,
	"kernel.shmmax":          true,
	"kernel.shmmni":          true,
	"kernel.shm_rmid_forced": true,
}

// validateSysctls accepts only namespaced sysctls whose namespace the
// container does not share with the host: setting one in a host namespace
// would change the node for everyone (runc refuses too, but later and less
// clearly).
func validateSysctls(sysctls map[string]string, ns Namespaces) error {
	for name := range sysctls {
		// Kubernetes allows "net/ipv4/conf/eth0.100/rp_filter", where the
		// dot belongs to an interface name; the prefix decides either way.
		key := name
		if strings.Contains(key, "/") {
			key = strings.ReplaceAll(key, "/", ".")
		}
		var owner string
		var mode NamespaceMode
		switch {
		case ipcSysctls[key] || strings.HasPrefix(key, "fs.mqueue."):
			owner, mode = "ipc", ns.IPC.Mode
		case strings.HasPrefix(key, "net."):
			owner, mode = "network", ns.Network.Mode
		case key == "kernel.domainname":
			owner, mode = "uts", ns.UTS.Mode
		case key == "kernel.hostname":
			// runc refuses it too: the hostname has its own spec field.
			return fmt.Errorf("sysctl %q: set the hostname instead: %w", name, errdefs.ErrInvalidArgument)
		case strings.HasPrefix(key, "user."):
			// ucounts of the initial user namespace limit the whole
			// host; only a container's own user namespace may set them.
			if ns.User == nil {
				return fmt.Errorf("sysctl %q: needs a user namespace: %w", name, errdefs.ErrInvalidArgument)
			}
			continue
		default:
			return fmt.Errorf("sysctl %q: not a namespaced sysctl: %w", name, errdefs.ErrInvalidArgument)
		}
		if mode == NamespaceHost {
			return fmt.Errorf("sysctl %q: needs the container's own %s namespace, but it shares the host's: %w", name, owner, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}
