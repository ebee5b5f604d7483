package engine

import (
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/spec"
)

// initPath is where --init's init is mounted, as in Docker.
const initPath = "/sbin/docker-init"

// specInput is what the HostConfig/Config to spec translation reads: the
// create request after the merge with the image, its resolved mounts and
// the host facts the caller looked up.
type specInput struct {
	ID         string
	Config     *container.Config
	HostConfig *container.HostConfig
	// Mounts have their sources resolved (volumes' data directories).
	Mounts []MountPoint
	// AllCaps is what ALL and --privileged mean.
	AllCaps []string
	// Devices are the host devices of --device (and every host device
	// with --privileged), resolved by the caller.
	Devices []spec.Device
	// InitBinary is the init --init mounts; empty refuses --init.
	InitBinary string
	// SeccompProfile is the file holding a custom seccomp profile given
	// inline with --security-opt seccomp=<json>.
	SeccompProfile string
	// RecursiveReadOnly says the host can make mounts recursively
	// read-only (see specMounts).
	RecursiveReadOnly bool
}

// hostname is the container's hostname: the config's, else its short ID.
func hostname(id string, cfg *container.Config) string {
	if cfg.Hostname != "" {
		return cfg.Hostname
	}
	return id[:12]
}

// containerSpec translates the create request into the runtime's
// container spec, following dockerd's defaults: moby's seccomp profile,
// Docker's default capabilities, masked and read-only paths, a private PID
// namespace, HOSTNAME in the environment. The sandbox's parts (network,
// IPC and UTS namespaces, /etc files, /dev/shm) are the runtime's.
func containerSpec(in specInput) (spec.Container, error) {
	cfg, hc := in.Config, in.HostConfig
	entry, args, err := command(cfg)
	if err != nil {
		return spec.Container{}, err
	}
	argv := append([]string{entry}, args...)
	mounts, err := specMounts(in.Mounts, in.RecursiveReadOnly)
	if err != nil {
		return spec.Container{}, err
	}
	if hc.Init != nil && *hc.Init {
		if in.InitBinary == "" {
			return spec.Container{}, errdefs.ErrNotImplemented.WithMessage("--init: no init binary is configured")
		}
		argv = append([]string{initPath, "--"}, argv...)
		mounts = append(mounts, spec.Mount{Source: in.InitBinary, Destination: initPath, Type: "bind", ReadOnly: true})
	}
	sec, err := parseSecurityOpts(hc.SecurityOpt)
	if err != nil {
		return spec.Container{}, err
	}
	c := spec.Container{
		ID:              in.ID,
		Args:            argv,
		Env:             slices.Clone(cfg.Env),
		WorkingDir:      cfg.WorkingDir,
		User:            spec.User{Spec: cfg.User},
		Terminal:        cfg.Tty,
		Hostname:        hostname(in.ID, cfg),
		ReadOnlyRootfs:  hc.ReadonlyRootfs,
		Mounts:          mounts,
		Privileged:      hc.Privileged,
		Capabilities:    spec.Capabilities{Add: hc.CapAdd, Drop: hc.CapDrop, All: in.AllCaps},
		NoNewPrivileges: sec.noNewPrivileges,
		MaskedPaths:     hc.MaskedPaths,
		ReadonlyPaths:   hc.ReadonlyPaths,
		Devices:         in.Devices,
		Annotations:     hc.Annotations,
		Seccomp:         spec.Seccomp{Kind: spec.SeccompRuntimeDefault},
	}
	if sec.systemPathsUnconfined {
		c.MaskedPaths, c.ReadonlyPaths = []string{}, []string{}
	}
	switch sec.seccomp {
	case "":
	case "unconfined":
		c.Seccomp = spec.Seccomp{Kind: spec.SeccompUnconfined}
	case "builtin":
	default:
		if in.SeccompProfile == "" {
			return spec.Container{}, invalid("invalid --security-opt seccomp: the profile was not saved")
		}
		c.Seccomp = spec.Seccomp{Kind: spec.SeccompLocalhost, LocalhostPath: in.SeccompProfile}
	}
	switch sec.apparmor {
	case "":
	case "unconfined":
		c.AppArmor = spec.AppArmor{Kind: spec.AppArmorUnconfined}
	default:
		c.AppArmor = spec.AppArmor{Kind: spec.AppArmorLocalhost, Profile: sec.apparmor}
	}
	for _, g := range hc.GroupAdd {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			c.User.SupplementalGroups = append(c.User.SupplementalGroups, uint32(n))
		} else {
			c.User.SupplementalGroupNames = append(c.User.SupplementalGroupNames, g)
		}
	}
	if hc.OomScoreAdj != 0 {
		adj := hc.OomScoreAdj
		c.OOMScoreAdj = &adj
	}
	if c.Resources, err = resources(hc.Resources); err != nil {
		return spec.Container{}, err
	}
	for _, u := range hc.Ulimits {
		name, ok := rlimitNames[u.Name]
		if !ok {
			return spec.Container{}, invalid("invalid ulimit type: %s", u.Name)
		}
		c.Rlimits = append(c.Rlimits, specs.POSIXRlimit{Type: name, Soft: uint64(u.Soft), Hard: uint64(u.Hard)})
	}
	if hc.CgroupnsMode.IsPrivate() {
		c.Namespaces.Cgroup = spec.Namespace{Mode: spec.NamespacePrivate}
	}
	return c, nil
}

// resources converts Docker's resources; zero values stay unset.
func resources(r container.Resources) (spec.Resources, error) {
	out := spec.Resources{
		CPUShares:         uint64(max(r.CPUShares, 0)),
		CPUQuota:          r.CPUQuota,
		CPUPeriod:         uint64(max(r.CPUPeriod, 0)),
		CpusetCpus:        r.CpusetCpus,
		CpusetMems:        r.CpusetMems,
		MemoryLimit:       r.Memory,
		MemoryReservation: r.MemoryReservation,
	}
	if r.NanoCPUs > 0 {
		// Docker's conversion: a 100 ms period and the matching quota.
		out.CPUPeriod = 100000
		out.CPUQuota = r.NanoCPUs * 100000 / 1e9
	}
	if r.Memory > 0 {
		switch {
		case r.MemorySwap == -1:
			v := int64(-1)
			out.MemorySwap = &v
		case r.MemorySwap > 0:
			v := r.MemorySwap
			out.MemorySwap = &v
		default:
			// Docker's default: as much swap as memory.
			v := 2 * r.Memory
			out.MemorySwap = &v
		}
	}
	if r.PidsLimit != nil && *r.PidsLimit > 0 {
		out.PidsLimit = *r.PidsLimit
	}
	if r.MemorySwappiness != nil && *r.MemorySwappiness >= 0 {
		v := uint64(*r.MemorySwappiness)
		out.MemorySwappiness = &v
	}
	out.DisableOOMKiller = r.OomKillDisable != nil && *r.OomKillDisable
	out.BlkioWeight = r.BlkioWeight
	return out, nil
}

// sandboxSpec is the runtime sandbox of a container: its namespaces, DNS,
// hosts entries, hostname and /dev/shm.
type sandboxSpec struct {
	cfg runtime.SandboxConfig
	// pidTarget is the container whose PID namespace is joined.
	pidTarget string
}

// networkKind classifies a network mode.
type networkKind int

const (
	netBridge networkKind = iota // default bridge or a user-defined network
	netHost
	netNone
	netContainer
)

func classifyNetwork(mode container.NetworkMode) networkKind {
	switch {
	case mode == "host":
		return netHost
	case mode == "none":
		return netNone
	case mode.IsContainer():
		return netContainer
	}
	return netBridge
}

// dnsConfig is the resolv.conf the container gets: --dns, --dns-search
// and --dns-option over the host's, whose loopback name servers are
// dropped (they cannot be reached from another network namespace), with
// Docker's public fallbacks when none is left.
func dnsConfig(hc *container.HostConfig, hostResolv []byte, hostNetwork bool) *runtime.DNS {
	if hostNetwork && len(hc.DNS) == 0 && len(hc.DNSSearch) == 0 && len(hc.DNSOptions) == 0 {
		return nil
	}
	d := &runtime.DNS{}
	var servers, search, options []string
	for _, line := range strings.Split(string(hostResolv), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if hostNetwork || !isLoopback(f[1]) {
				servers = append(servers, f[1])
			}
		case "search", "domain":
			search = f[1:]
		case "options":
			options = append(options, f[1:]...)
		}
	}
	if len(servers) == 0 {
		servers = []string{"8.8.8.8", "8.8.4.4"}
	}
	d.Servers, d.Searches, d.Options = servers, search, options
	if len(hc.DNS) > 0 {
		d.Servers = nil
		for _, a := range hc.DNS {
			d.Servers = append(d.Servers, a.String())
		}
	}
	if len(hc.DNSSearch) > 0 {
		d.Searches = slices.DeleteFunc(slices.Clone(hc.DNSSearch), func(s string) bool { return s == "." })
	}
	if len(hc.DNSOptions) > 0 {
		d.Options = hc.DNSOptions
	}
	return d
}

func isLoopback(ip string) bool {
	return strings.HasPrefix(ip, "127.") || ip == "::1"
}

// extraHosts converts --add-host entries; gateway is what host-gateway
// means ("" when unknown).
func extraHosts(hc *container.HostConfig, gateway string) ([]runtime.HostEntry, error) {
	var out []runtime.HostEntry
	for _, h := range hc.ExtraHosts {
		name, ip, err := parseExtraHost(h)
		if err != nil {
			return nil, err
		}
		if ip == "host-gateway" {
			if gateway == "" {
				return nil, invalid("unable to derive the IP value for host-gateway")
			}
			ip = gateway
		}
		out = append(out, runtime.HostEntry{IP: ip, Names: []string{name}})
	}
	return out, nil
}

// cleanDest reports whether dst is clean and absolute (for the fuzz
// test's invariants).
func cleanDest(dst string) bool { return path.IsAbs(dst) && path.Clean(dst) == dst }
