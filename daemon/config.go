package daemon

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/builder"
	"github.com/berth-dev/berth/cni"
	"github.com/berth-dev/berth/cri"
	"github.com/berth-dev/berth/engine/logs"
	"github.com/berth-dev/berth/engine/network"
	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/runtime"
)

// Version is berthd's version, reported by the CRI Version RPC, the Docker
// API and --version.
const Version = "0.1.0"

// Config is berthd's whole configuration: its own settings and the
// packages' configs, as one TOML file holds them. The zero value is not
// usable; start from DefaultConfig.
type Config struct {
	// Root holds the persistent state: images, layers, the records of pods
	// and containers, CNI's cache.
	Root string `toml:"root"`
	// State holds sockets and other runtime state that a reboot clears.
	State string `toml:"state"`
	// Listen is the CRI socket path (a "unix://" prefix is accepted);
	// empty means <State>/berth.sock.
	Listen string `toml:"listen"`
	// DockerListen is the Docker API socket path; empty means
	// <State>/docker.sock.
	DockerListen string `toml:"docker_listen"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
	// Images configures the image store.
	Images ImagesConfig `toml:"images"`
	// Runtime configures pods and containers.
	Runtime RuntimeConfig `toml:"runtime"`
	// CNI configures pod networking.
	CNI CNIConfig `toml:"cni"`
	// NRI configures NRI plugins of the CRI's pods and containers.
	NRI NRIConfig `toml:"nri"`
	// Builder configures Dockerfile builds.
	Builder BuilderConfig `toml:"builder"`
	// Logging is the log driver standalone containers get when they name
	// none: dockerd's log-driver and log-opts (daemon.json), e.g.
	//
	//	[logging]
	//	driver = "json-file"
	//	[logging.opts]
	//	max-size = "10m"
	//	max-file = "5"
	//
	// A file that sets opts replaces the default opts; one that names
	// another driver without opts starts from none.
	Logging logs.Config `toml:"logging"`
	// Network configures the standalone containers' networks.
	Network NetworkConfig `toml:"network"`
	// StreamAddress and StreamPort are where the CRI streaming server
	// (exec, attach, port-forward) listens; port "0" picks a free one.
	// The kubelet proxies its URLs, so loopback is enough.
	StreamAddress string `toml:"stream_address"`
	StreamPort    string `toml:"stream_port"`
	// Logger receives the daemon's logs; nil discards them. It is not part
	// of the file: the binary builds it from LogLevel.
	Logger *slog.Logger `toml:"-" json:"-"`
}

// ImagesConfig is the [images] section: imagestore.Config without the root,
// which is the daemon's.
type ImagesConfig struct {
	// RegistryConfigDir is a containerd-style hosts.toml directory.
	RegistryConfigDir string `toml:"registry_config_dir"`
	// DockerConfig is a docker config.json for credentials; empty means
	// ~/.docker/config.json.
	DockerConfig string `toml:"docker_config"`
	// StallTimeout fails a transfer that receives nothing for this long
	// ("30s", "2m").
	StallTimeout time.Duration `toml:"stall_timeout"`
	// MaxConcurrentDownloads bounds the layers fetched at once per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads"`
}

// RuntimeConfig is the [runtime] section.
type RuntimeConfig struct {
	// ShimBinary is the berth-shim executable; empty means the berth-shim
	// next to the berthd executable, else the one in PATH.
	ShimBinary string `toml:"shim_binary"`
	// CgroupDriver is "cgroupfs" (also what empty means, on any host, as
	// containerd defaults to); "systemd" is refused as not implemented yet
	// (see runtime.Config). The kubelet learns it from RuntimeConfig.
	CgroupDriver string `toml:"cgroup_driver"`
	// StrictResources fails a container that asks for a limit this host
	// cannot apply (hugepage limits without the hugetlb controller, a swap
	// limit without swap accounting, cgroup v2 files on a v1 host). Off,
	// they are dropped with a debug log, as Docker and containerd do.
	StrictResources bool `toml:"strict_resources"`
}

// BuilderConfig is the [builder] section.
type BuilderConfig struct {
	// DefaultNetwork is the network of RUN steps when a build names none
	// (or "default"): "bridge" (the default, docker's classic builder's:
	// the standalone containers' default bridge, so that a RUN does not
	// reach the host's loopback services), "host" (the host's network, as
	// BuildKit's own daemon runs without CNI: no bridge, plugins or
	// iptables rules needed) or "none".
	DefaultNetwork string `toml:"default_network"`
}

// NRIConfig is the [nri] section: NRI plugins (resource managers, device
// injectors) connect to SocketPath, observe the CRI's pods and containers
// and adjust containers, as with containerd and CRI-O.
type NRIConfig struct {
	// Disable turns NRI off: no socket, no plugins.
	Disable bool `toml:"disable"`
	// SocketPath is where plugins connect; NRI's default, which stock
	// plugins dial, is /var/run/nri/nri.sock.
	SocketPath string `toml:"socket_path"`
	// PluginPath holds plugins berthd starts itself, PluginConfigPath
	// their configs (NRI's /opt/nri/plugins and /etc/nri/conf.d).
	PluginPath       string `toml:"plugin_path"`
	PluginConfigPath string `toml:"plugin_config_path"`
	// PluginRegistrationTimeout and PluginRequestTimeout bound a plugin's
	// registration and each request to it ("5s", "2s", NRI's defaults): a
	// plugin that hangs or dies costs a pod at most this long, then is
	// disconnected.
	PluginRegistrationTimeout time.Duration `toml:"plugin_registration_timeout"`
	PluginRequestTimeout      time.Duration `toml:"plugin_request_timeout"`
}

// CNIConfig is the [cni] section.
type CNIConfig struct {
	// ConfDir holds the network configs; the first (by name) is used.
	ConfDir string `toml:"conf_dir"`
	// BinDirs are searched in order for plugin binaries.
	BinDirs []string `toml:"bin_dirs"`
	// CacheDir is libcni's result cache; empty means <root>/cni/cache.
	CacheDir string `toml:"cache_dir"`
}

// NetworkConfig is the [network] section: the networks of standalone
// (Docker API) containers. Their plugins come from [cni] bin_dirs; their
// conflists, leases and records live under <root>/network.
type NetworkConfig struct {
	// DefaultBridge is the kernel bridge of the default network "bridge"
	// (default berth-bridge); two daemons on one host need different ones.
	DefaultBridge string `toml:"default_bridge"`
	// DefaultSubnet is the default network's subnet ("172.17.0.0/16");
	// empty picks the first subnet of the pools that no host route covers,
	// once, when the network is first recorded.
	DefaultSubnet string `toml:"default_subnet"`
	// DefaultGateway is its gateway; empty means the subnet's first address.
	DefaultGateway string `toml:"default_gateway"`
	// MTU of the bridges (default 1500).
	MTU int `toml:"mtu"`
	// AddressPools are where automatic subnets come from (Docker's
	// default-address-pools; default 172.17-31.0.0/16, 192.168.0.0/16 in
	// /20s).
	AddressPools []AddressPool `toml:"default_address_pools"`
}

// AddressPool is one entry of default_address_pools.
type AddressPool struct {
	Base string `toml:"base"`
	Size int    `toml:"size"`
}

// DefaultConfig returns the configuration berthd runs with when nothing
// overrides it.
func DefaultConfig() Config {
	return Config{
		Root:     "/var/lib/berth",
		State:    "/run/berth",
		LogLevel: "info",
		Images: ImagesConfig{
			RegistryConfigDir: "/etc/berth/certs.d",
			// A minute without a byte is a dead connection, not a slow one.
			StallTimeout: time.Minute,
			// containerd's default; more rarely helps on one link.
			MaxConcurrentDownloads: 3,
		},
		NRI: NRIConfig{
			SocketPath:                "/var/run/nri/nri.sock",
			PluginPath:                "/opt/nri/plugins",
			PluginConfigPath:          "/etc/nri/conf.d",
			PluginRegistrationTimeout: 5 * time.Second,
			PluginRequestTimeout:      2 * time.Second,
		},
		CNI: CNIConfig{
			ConfDir: cni.DefaultConfDir,
			BinDirs: slices.Clone(cni.DefaultBinDirs),
		},
		Logging:       logs.DefaultConfig(),
		StreamAddress: "127.0.0.1",
		StreamPort:    "0",
	}
}

// ParseConfig decodes a TOML file's content on top of cfg. Unknown keys are
// an error, so a misspelt setting does not silently keep its default.
func ParseConfig(data []byte, cfg *Config) error {
	// The file's log opts replace the default's rather than merge with
	// them, as daemon.json's log-opts do.
	var probe struct {
		Logging struct {
			Driver string         `toml:"driver"`
			Opts   map[string]any `toml:"opts"`
		} `toml:"logging"`
	}
	pmd, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&probe)
	if err != nil {
		return fmt.Errorf("parse config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if pmd.IsDefined("logging", "opts") || (pmd.IsDefined("logging", "driver") && probe.Logging.Driver != cfg.Logging.Driver) {
		cfg.Logging.Opts = nil
	}
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(cfg)
	if err != nil {
		return fmt.Errorf("parse config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if undec := md.Undecoded(); len(undec) > 0 {
		keys := make([]string, len(undec))
		for i, k := range undec {
			keys[i] = k.String()
		}
		return fmt.Errorf("parse config: %w: unknown keys %s", errdefs.ErrInvalidArgument, strings.Join(keys, ", "))
	}
	return nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("invalid config: %w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if err := c.Logging.Validate(); err != nil {
		return fmt.Errorf("invalid config: %w", err)
	}
	for _, p := range []struct{ name, path string }{
		{"root", c.Root}, {"state", c.State},
		{"listen", c.CRISocket()}, {"docker_listen", c.DockerSocket()},
	} {
		if !filepath.IsAbs(p.path) {
			return invalid("%s %q is not an absolute path", p.name, p.path)
		}
	}
	if c.CRISocket() == c.DockerSocket() {
		return invalid("listen and docker_listen are the same socket %s", c.CRISocket())
	}
	if _, err := ParseLogLevel(c.LogLevel); err != nil {
		return err
	}
	if c.Images.StallTimeout <= 0 {
		return invalid("images.stall_timeout %v must be positive", c.Images.StallTimeout)
	}
	for _, p := range append([]string{c.Runtime.ShimBinary, c.CNI.ConfDir, c.CNI.CacheDir}, c.CNI.BinDirs...) {
		if p != "" && !filepath.IsAbs(p) {
			return invalid("path %q in [runtime] or [cni] is not absolute", p)
		}
	}
	switch c.Runtime.CgroupDriver {
	case "", runtime.CgroupDriverCgroupfs, runtime.CgroupDriverSystemd:
	default:
		return invalid("runtime.cgroup_driver %q is not cgroupfs or systemd", c.Runtime.CgroupDriver)
	}
	if net.ParseIP(c.StreamAddress) == nil {
		return invalid("stream_address %q is not an IP address", c.StreamAddress)
	}
	if p, err := strconv.ParseUint(c.StreamPort, 10, 16); err != nil || p > 65535 {
		return invalid("stream_port %q is not a port number", c.StreamPort)
	}
	switch c.Builder.DefaultNetwork {
	case "", builder.NetworkHost, builder.NetworkNone, builder.NetworkBridge:
	default:
		return invalid("builder.default_network %q is not host, bridge or none", c.Builder.DefaultNetwork)
	}
	if c.Images.MaxConcurrentDownloads < 1 {
		return invalid("images.max_concurrent_downloads %d must be at least 1", c.Images.MaxConcurrentDownloads)
	}
	if _, err := c.networkConfig(); err != nil {
		return err
	}
	if !c.NRI.Disable {
		for _, p := range []struct{ name, path string }{
			{"nri.socket_path", c.NRI.SocketPath}, {"nri.plugin_path", c.NRI.PluginPath}, {"nri.plugin_config_path", c.NRI.PluginConfigPath},
		} {
			if !filepath.IsAbs(p.path) {
				return invalid("%s %q is not an absolute path", p.name, p.path)
			}
		}
		// A unix socket path is at most 107 bytes.
		if len(c.NRI.SocketPath) > 107 {
			return invalid("nri.socket_path %q is longer than a unix socket path may be (107 bytes)", c.NRI.SocketPath)
		}
		if c.NRI.SocketPath == c.CRISocket() || c.NRI.SocketPath == c.DockerSocket() {
			return invalid("nri.socket_path %s is berthd's own CRI or Docker socket", c.NRI.SocketPath)
		}
		if c.NRI.PluginRegistrationTimeout <= 0 || c.NRI.PluginRequestTimeout <= 0 {
			return invalid("nri.plugin_registration_timeout %v and nri.plugin_request_timeout %v must be positive", c.NRI.PluginRegistrationTimeout, c.NRI.PluginRequestTimeout)
		}
	}
	return nil
}

// nriConfig returns the CRI's NRI config, nil when NRI is off.
func (c Config) nriConfig() *cri.NRIConfig {
	if c.NRI.Disable {
		return nil
	}
	return &cri.NRIConfig{
		SocketPath:          c.NRI.SocketPath,
		PluginPath:          c.NRI.PluginPath,
		PluginConfigPath:    c.NRI.PluginConfigPath,
		RegistrationTimeout: c.NRI.PluginRegistrationTimeout,
		RequestTimeout:      c.NRI.PluginRequestTimeout,
	}
}

// CRISocket is the path of the CRI socket.
func (c Config) CRISocket() string {
	if c.Listen != "" {
		return strings.TrimPrefix(c.Listen, "unix://")
	}
	return filepath.Join(c.State, "berth.sock")
}

// DockerSocket is the path of the Docker API socket.
func (c Config) DockerSocket() string {
	if c.DockerListen != "" {
		return strings.TrimPrefix(c.DockerListen, "unix://")
	}
	return filepath.Join(c.State, "docker.sock")
}

// imageStore returns the image store's config.
func (c Config) imageStore() imagestore.Config {
	return imagestore.Config{
		Root:                   c.Root,
		RegistryConfigDir:      c.Images.RegistryConfigDir,
		DockerConfig:           c.Images.DockerConfig,
		StallTimeout:           c.Images.StallTimeout,
		MaxConcurrentDownloads: c.Images.MaxConcurrentDownloads,
	}
}

// runtimeConfig returns the runtime manager's config; shim is the resolved
// shim binary.
func (c Config) runtimeConfig(shim string) runtime.Config {
	return runtime.Config{
		Root:            filepath.Join(c.Root, "runtime"),
		StateDir:        c.State,
		ShimBinary:      shim,
		CgroupDriver:    c.Runtime.CgroupDriver,
		StrictResources: c.Runtime.StrictResources,
	}
}

// builderConfig returns the builder's config: its persistent dirs (cache
// mounts) under the root, each build's tmpfs under the state dir.
func (c Config) builderConfig() builder.Config {
	return builder.Config{
		Root:           filepath.Join(c.Root, "builder"),
		StateDir:       filepath.Join(c.State, "builder"),
		DefaultNetwork: c.Builder.DefaultNetwork,
	}
}

// cniConfig returns the CNI manager's config. NetNSDir must be where the
// runtime pins network namespaces (<state>/ns/net), or CNI refuses them.
func (c Config) cniConfig() cni.Config {
	cache := c.CNI.CacheDir
	if cache == "" {
		cache = filepath.Join(c.Root, "cni", "cache")
	}
	return cni.Config{
		ConfDir:  c.CNI.ConfDir,
		BinDirs:  c.CNI.BinDirs,
		CacheDir: cache,
		NetNSDir: filepath.Join(c.State, "ns", "net"),
		// The runtime brings lo up when it pins a pod's netns.
		LoopbackUp: true,
	}
}

// networkConfig returns the network manager's config.
func (c Config) networkConfig() (network.Config, error) {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("invalid config: %w: %s", errdefs.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	n := c.Network
	out := network.Config{
		Root:          filepath.Join(c.Root, "network"),
		NetNSDir:      filepath.Join(c.State, "ns", "net"),
		BinDirs:       c.CNI.BinDirs,
		DefaultBridge: n.DefaultBridge,
		MTU:           n.MTU,
	}
	if n.DefaultSubnet != "" {
		p, err := netip.ParsePrefix(n.DefaultSubnet)
		if err != nil {
			return network.Config{}, invalid("network.default_subnet %q: %v", n.DefaultSubnet, err)
		}
		out.DefaultSubnet = p
	}
	if n.DefaultGateway != "" {
		a, err := netip.ParseAddr(n.DefaultGateway)
		if err != nil {
			return network.Config{}, invalid("network.default_gateway %q: %v", n.DefaultGateway, err)
		}
		out.DefaultGateway = a
	}
	for _, p := range n.AddressPools {
		base, err := netip.ParsePrefix(p.Base)
		if err != nil {
			return network.Config{}, invalid("network.default_address_pools base %q: %v", p.Base, err)
		}
		out.AddressPools = append(out.AddressPools, network.Pool{Base: base, Size: p.Size})
	}
	if err := out.Validate(); err != nil {
		return network.Config{}, err
	}
	return out, nil
}

// ParseLogLevel parses debug, info, warn or error (any case).
func ParseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid config: %w: log level %q is not debug, info, warn or error", errdefs.ErrInvalidArgument, s)
	}
	return l, nil
}
