// Package cni attaches pod network namespaces to the node's network through
// CNI plugins (libcni). It is the only package that imports libcni.
//
// Contract:
//   - The network is the first usable config in Config.ConfDir in lexical
//     order (*.conflist, *.conf, *.json), as the kubelet and containerd pick
//     it. The directory is read again on every Attach and Ready, so a config
//     written after berthd started (hack/cni-conf.sh, a CNI daemonset) is used
//     without a restart; reading and parsing it costs microseconds against the
//     tens of milliseconds of an ADD.
//   - Network namespaces are created and pinned by the caller (runtime/);
//     Attach gets the pinned path, which must lie under Config.NetNSDir.
//   - Attach brings up lo with the built-in loopback plugin, then runs ADD
//     of the network with CNI_ARGS IgnoreUnknown=1;K8S_POD_NAMESPACE;
//     K8S_POD_NAME;K8S_POD_INFRA_CONTAINER_ID;K8S_POD_UID and the
//     portMappings/bandwidth/dns capability args. If ADD fails, DEL runs
//     before Attach returns, so no IP lease is left behind.
//   - Detach is idempotent and works when the netns is already gone: it
//     runs DEL with the config, arguments and result libcni cached at ADD
//     (Config.CacheDir), and with an empty CNI_NETNS when the path no longer
//     exists, so IPAM still releases the lease. Without a cache entry (a
//     crash during ADD, or a second Detach) it runs DEL with the intent's
//     config, else the current one, which plugins treat as a no-op when
//     nothing is left.
//   - Detach before unpinning the namespace. With the namespace gone the
//     lease, veth, portmap and firewall rules still go, but the bridge
//     plugin (v1.10.0) finds the pod's addresses only on its veth and leaves
//     its ipMasq rules behind (containernetworking/plugins#810).
//   - Before its first plugin runs, Attach records an intent (Config.IntentDir,
//     written durably) with the pod's arguments and the config list; after
//     each plugin's ADD it adds that plugin's result. A successful Detach
//     removes it. Detach of a pod without a cache entry runs its DEL with
//     the intent's config and last result.
//   - GC, at start-up, detaches the cached attachments and the intents of
//     pods the caller no longer knows: a crash at any point of an Attach
//     or Detach leaks no lease, veth or rule. Release detaches one pod only
//     if it has an intent or a cached attachment.
//
// Errors are classified with github.com/containerd/errdefs: bad input is
// ErrInvalidArgument, no usable config or a missing plugin
// ErrFailedPrecondition, an unknown attachment ErrNotFound, a plugin's
// "try again later" ErrUnavailable and other plugin failures ErrUnknown,
// always wrapping the plugin's own error.
package cni

import (
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"
)

// Default locations.
const (
	DefaultConfDir  = "/etc/cni/net.d"
	DefaultCacheDir = "/var/lib/berth/cni/cache"
	// DefaultIntentDir is IntentDir's default when CacheDir is the
	// default; otherwise IntentDir defaults to <CacheDir>/intents.
	DefaultIntentDir = DefaultCacheDir + "/intents"
	DefaultNetNSDir  = "/run/berth/netns"
	// DefaultIfName is the pod's interface, as the kubelet expects it.
	DefaultIfName = "eth0"
)

// DefaultBinDirs are searched in order for plugin binaries: where upstream
// installs them, then Debian's containernetworking-plugins package.
var DefaultBinDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}

// Config configures a Manager.
type Config struct {
	// ConfDir holds the network configs (default /etc/cni/net.d).
	ConfDir string
	// BinDirs are searched in order for plugins (default /opt/cni/bin,
	// /usr/lib/cni).
	BinDirs []string
	// CacheDir is libcni's cache of ADD results, needed by DEL after a
	// restart; it must survive reboots as IPAM leases do (default
	// /var/lib/berth/cni/cache).
	CacheDir string
	// IntentDir holds a record for every pod whose Attach may have begun
	// and whose Detach has not succeeded (default <CacheDir>/intents): what
	// GC needs to release a pod that a crash interrupted in the middle of
	// its ADD, which libcni's cache never saw. Like CacheDir, it must
	// survive reboots.
	IntentDir string
	// NetNSDir is where the runtime pins network namespaces (default
	// /run/berth/netns). Attach refuses any other path: a plugin pointed at
	// the wrong namespace would rewire the host.
	NetNSDir string
	// IfName is the interface created in the pod (default eth0).
	IfName string
	// LoopbackUp says the caller brings lo up itself when it creates the
	// network namespace (berthd's runtime does, when it pins it), so
	// Attach need not exec the loopback plugin: one process less on every
	// pod start.
	LoopbackUp bool
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		ConfDir:   DefaultConfDir,
		BinDirs:   append([]string(nil), DefaultBinDirs...),
		CacheDir:  DefaultCacheDir,
		IntentDir: DefaultIntentDir,
		NetNSDir:  DefaultNetNSDir,
		IfName:    DefaultIfName,
	}
}

// Validate fills the defaults of empty fields and checks the rest.
func (c *Config) Validate() error {
	d := DefaultConfig()
	if c.ConfDir == "" {
		c.ConfDir = d.ConfDir
	}
	if len(c.BinDirs) == 0 {
		c.BinDirs = d.BinDirs
	}
	if c.CacheDir == "" {
		c.CacheDir = d.CacheDir
	}
	if c.IntentDir == "" {
		c.IntentDir = filepath.Join(c.CacheDir, "intents")
	}
	if c.NetNSDir == "" {
		c.NetNSDir = d.NetNSDir
	}
	if c.IfName == "" {
		c.IfName = d.IfName
	}
	// libcni passes relative paths to plugins that run with another cwd.
	for _, p := range append([]string{c.ConfDir, c.CacheDir, c.IntentDir, c.NetNSDir}, c.BinDirs...) {
		if !filepath.IsAbs(p) {
			return fmt.Errorf("cni config: path %q must be absolute: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	// The kernel's IFNAMSIZ is 16 with the terminating NUL.
	if len(c.IfName) > 15 {
		return fmt.Errorf("cni config: interface name %q longer than 15 bytes: %w", c.IfName, errdefs.ErrInvalidArgument)
	}
	return nil
}
