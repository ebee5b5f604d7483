package engine

import (
	"fmt"
	"maps"
	"net/netip"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/sys/capability"
	"github.com/moby/sys/signal"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
)

// invalid is a bad request with a message of Docker's.
func invalid(format string, args ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
}

// maxHostname is the kernel's limit (HOST_NAME_MAX).
const maxHostname = 64

// verifySettings checks a create request as dockerd does before it looks
// at the image, and normalises what it can: the default restart policy,
// the network mode. It returns dockerd's warnings.
func verifySettings(cfg *container.Config, hc *container.HostConfig) ([]string, error) {
	var warnings []string
	if hc.RestartPolicy.Name == "" {
		hc.RestartPolicy.Name = container.RestartPolicyDisabled
	}
	if hc.NetworkMode == "" {
		hc.NetworkMode = network.NetworkDefault
	}
	if cfg.WorkingDir != "" {
		cfg.WorkingDir = path.Clean(cfg.WorkingDir)
		if !path.IsAbs(cfg.WorkingDir) {
			return nil, invalid("the working directory '%s' is invalid, it needs to be an absolute path", cfg.WorkingDir)
		}
	}
	if cfg.StopSignal != "" {
		if _, err := parseSignal(cfg.StopSignal); err != nil {
			return nil, err
		}
	}
	for _, env := range cfg.Env {
		if k, _, _ := strings.Cut(env, "="); strings.TrimSpace(k) == "" {
			return nil, invalid("invalid environment variable: %s", env)
		}
	}
	if h := cfg.Healthcheck; h != nil {
		for _, d := range []struct {
			name string
			v    int64
		}{{"Interval", int64(h.Interval)}, {"Timeout", int64(h.Timeout)}, {"StartPeriod", int64(h.StartPeriod)}, {"StartInterval", int64(h.StartInterval)}} {
			if d.v != 0 && d.v < int64(container.MinimumDuration) {
				return nil, invalid("%s in Healthcheck cannot be less than %s", d.name, container.MinimumDuration)
			}
		}
		if h.Retries < 0 {
			return nil, invalid("Retries in Healthcheck cannot be negative")
		}
	}
	if len(cfg.Hostname) > maxHostname {
		return nil, invalid("invalid hostname format: %s", cfg.Hostname)
	}

	if hc.AutoRemove && !hc.RestartPolicy.IsNone() {
		return nil, invalid("can't create 'AutoRemove' container with restart policy")
	}
	if err := container.ValidateRestartPolicy(hc.RestartPolicy); err != nil {
		return nil, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	for _, h := range hc.ExtraHosts {
		if _, _, err := parseExtraHost(h); err != nil {
			return nil, err
		}
	}
	for port := range hc.PortBindings {
		if !port.IsValid() || port.Num() == 0 {
			return nil, invalid("invalid port specification: %q", port.String())
		}
	}
	for _, caps := range [][]string{hc.CapAdd, hc.CapDrop} {
		for _, c := range caps {
			if err := checkCapability(c); err != nil {
				return nil, err
			}
		}
	}
	for k := range hc.Annotations {
		if k == "" {
			return nil, invalid("invalid Annotations: the empty string is not permitted as an annotation key")
		}
	}
	if !hc.Isolation.IsDefault() {
		return nil, invalid("invalid isolation '%s' on %s", hc.Isolation, runtime.GOOS)
	}

	switch {
	case !hc.IpcMode.Valid():
		return nil, invalid("invalid IPC mode: %v", hc.IpcMode)
	case !hc.PidMode.Valid():
		return nil, invalid("invalid PID mode: %v", hc.PidMode)
	case !hc.UTSMode.Valid():
		return nil, invalid("invalid UTS mode: %v", hc.UTSMode)
	case !hc.CgroupnsMode.Valid():
		return nil, invalid("invalid cgroup namespace mode: %v", hc.CgroupnsMode)
	case !hc.UsernsMode.Valid():
		return nil, invalid("invalid USER mode: %v", hc.UsernsMode)
	case hc.ShmSize < 0:
		return nil, invalid("SHM size can not be less than 0")
	case hc.OomScoreAdj < -1000 || hc.OomScoreAdj > 1000:
		return nil, invalid("Invalid value %d, range for oom score adj is [-1000, 1000]", hc.OomScoreAdj)
	}
	if hc.IpcMode.IsContainer() && hc.IpcMode.Container() == "" {
		return nil, invalid("invalid IPC mode: %v", hc.IpcMode)
	}
	if hc.UTSMode.IsHost() && cfg.Hostname != "" {
		return nil, invalid("conflicting options: hostname and the UTS mode")
	}
	if hc.NetworkMode.IsContainer() {
		if hc.NetworkMode.ConnectedContainer() == "" {
			return nil, invalid("invalid network mode: %s", hc.NetworkMode)
		}
		if cfg.Hostname != "" {
			return nil, invalid("conflicting options: hostname and the network mode")
		}
		if len(hc.PortBindings) > 0 || hc.PublishAllPorts {
			return nil, invalid("conflicting options: port publishing and the container type network mode")
		}
		if len(hc.DNS) > 0 || len(hc.DNSSearch) > 0 || len(hc.DNSOptions) > 0 {
			return nil, invalid("conflicting options: dns and the network mode")
		}
		if len(hc.ExtraHosts) > 0 {
			return nil, invalid("conflicting options: custom host-to-IP mapping and the network mode")
		}
	}
	if hc.NetworkMode == network.NetworkHost && (len(hc.PortBindings) > 0 || hc.PublishAllPorts) {
		warnings = append(warnings, "Published ports are discarded when using host network mode")
	}
	warnings = append(warnings, discardUnsupported(&hc.Resources, hostCgroupFeatures())...)
	if w, err := verifyResources(&hc.Resources); err != nil {
		return warnings, err
	} else {
		warnings = append(warnings, w...)
	}
	for _, u := range hc.Ulimits {
		if u == nil || u.Name == "" {
			return nil, invalid("invalid ulimit: empty name")
		}
		if _, ok := rlimitNames[u.Name]; !ok {
			return nil, invalid("invalid ulimit type: %s", u.Name)
		}
		if u.Soft > u.Hard {
			return nil, invalid("ulimit soft limit must be less than or equal to hard limit: %d > %d", u.Soft, u.Hard)
		}
	}
	if _, err := parseSecurityOpts(hc.SecurityOpt); err != nil {
		return nil, err
	}
	for _, d := range hc.Devices {
		if d.PathOnHost == "" {
			return nil, invalid("invalid device mapping: empty host path")
		}
		if p := d.CgroupPermissions; p != "" && strings.Trim(p, "rwm") != "" {
			return nil, invalid("invalid device mode: %s", p)
		}
	}
	if len(hc.DeviceRequests) > 0 {
		return nil, errdefs.ErrNotImplemented.WithMessage("device requests (--gpus) are not supported by berth")
	}
	if hc.UsernsMode.IsHost() {
		// The daemon runs no user-namespace remapping: host is what
		// every container gets.
		hc.UsernsMode = ""
	}
	if hc.Runtime != "" && hc.Runtime != "runc" && hc.Runtime != "berth" {
		return nil, invalid("unknown or invalid runtime name: %s", hc.Runtime)
	}
	return warnings, nil
}

func verifyResources(r *container.Resources) ([]string, error) {
	var warnings []string
	switch {
	case r.Memory > 0 && r.Memory < 6*1024*1024:
		return nil, invalid("Minimum memory limit allowed is 6MB")
	case r.Memory > 0 && r.MemorySwap > 0 && r.MemorySwap < r.Memory:
		return nil, invalid("Minimum memoryswap limit should be larger than memory limit, see usage")
	case r.Memory == 0 && r.MemorySwap > 0:
		return nil, invalid("You should always set the Memory limit when using Memoryswap limit, see usage")
	case r.MemorySwappiness != nil && *r.MemorySwappiness != -1 && (*r.MemorySwappiness < 0 || *r.MemorySwappiness > 100):
		return nil, invalid("Invalid value: %v, valid memory swappiness range is 0-100", *r.MemorySwappiness)
	case r.MemoryReservation > 0 && r.MemoryReservation < 6*1024*1024:
		return nil, invalid("Minimum memory reservation allowed is 6MB")
	case r.Memory > 0 && r.MemoryReservation > 0 && r.Memory < r.MemoryReservation:
		return nil, invalid("Minimum memory limit can not be less than memory reservation limit, see usage")
	case r.NanoCPUs > 0 && r.CPUPeriod > 0:
		return nil, invalid("Conflicting options: Nano CPUs and CPU Period cannot both be set")
	case r.NanoCPUs > 0 && r.CPUQuota > 0:
		return nil, invalid("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
	case r.CPUShares < 0:
		return nil, invalid("invalid CPU shares (%d): value must be a positive integer", r.CPUShares)
	case r.CPUPeriod != 0 && (r.CPUPeriod < 1000 || r.CPUPeriod > 1000000):
		return nil, invalid("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
	case r.CPUQuota > 0 && r.CPUQuota < 1000:
		return nil, invalid("CPU cfs quota can not be less than 1ms (i.e. 1000)")
	case r.BlkioWeight > 0 && (r.BlkioWeight < 10 || r.BlkioWeight > 1000):
		return nil, invalid("Range of blkio weight is from 10 to 1000")
	}
	if nc := runtime.NumCPU(); r.NanoCPUs < 0 || r.NanoCPUs > int64(nc)*1e9 {
		return nil, invalid("range of CPUs is from 0.01 to %[1]d.00, as there are only %[1]d CPUs available", nc)
	}
	if r.OomKillDisable != nil && *r.OomKillDisable && r.Memory == 0 {
		warnings = append(warnings, "OOM killer is disabled for the container, but no memory limit is set, this can result in the system running out of resources.")
	}
	return warnings, nil
}

// parseSignal parses a signal name or number as Docker does.
func parseSignal(s string) (syscall.Signal, error) {
	sig, err := signal.ParseSignal(s)
	if err != nil {
		return 0, errdefs.ErrInvalidArgument.WithMessage(err.Error())
	}
	return sig, nil
}

// parseExtraHost checks a --add-host entry, "name:ip" or "name=ip"; the
// IP may be "host-gateway".
func parseExtraHost(h string) (string, string, error) {
	name, ip, ok := strings.Cut(h, "=")
	if !ok {
		name, ip, ok = strings.Cut(h, ":")
	}
	if !ok || name == "" {
		return "", "", invalid("bad format for add-host: %q", h)
	}
	ip = strings.TrimSuffix(strings.TrimPrefix(ip, "["), "]")
	if ip == "host-gateway" {
		return name, ip, nil
	}
	if !validIP(ip) {
		return "", "", invalid("invalid IP address in add-host: %q", ip)
	}
	return name, ip, nil
}

// checkCapability accepts capability names with or without CAP_, in any
// case, and ALL.
func checkCapability(c string) error {
	n := strings.ToUpper(c)
	if n == "ALL" {
		return nil
	}
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	for _, k := range capability.ListKnown() {
		if n == "CAP_"+strings.ToUpper(k.String()) {
			return nil
		}
	}
	return invalid("invalid CapAdd: unknown capability: %q", n)
}

// validIP reports whether s is an IPv4 or IPv6 address.
func validIP(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// securityOpts are the parsed --security-opt values.
type securityOpts struct {
	noNewPrivileges bool
	seccomp         string // "" default, "unconfined", or a profile's JSON
	apparmor        string
	labelDisable    bool
	maskedPathsOff  bool
	// systempaths=unconfined: no masked or read-only paths.
	systemPathsUnconfined bool
}

// parseSecurityOpts reads --security-opt: no-new-privileges[:bool],
// seccomp=unconfined|<profile JSON>, apparmor=..., label=...,
// systempaths=unconfined. SELinux labels are accepted and have no effect
// (no SELinux on the hosts Berth runs on); so is apparmor where the
// kernel has none.
func parseSecurityOpts(opts []string) (securityOpts, error) {
	var s securityOpts
	for _, opt := range opts {
		if opt == "no-new-privileges" {
			s.noNewPrivileges = true
			continue
		}
		if opt == "disable" {
			s.labelDisable = true
			continue
		}
		k, v, ok := strings.Cut(opt, "=")
		if !ok {
			k, v, ok = strings.Cut(opt, ":")
		}
		if !ok {
			return s, invalid("invalid --security-opt 1: %q", opt)
		}
		switch k {
		case "no-new-privileges":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return s, invalid("invalid --security-opt 2: %q", opt)
			}
			s.noNewPrivileges = b
		case "seccomp":
			s.seccomp = v
		case "apparmor":
			s.apparmor = v
		case "label":
			if v == "disable" {
				s.labelDisable = true
			}
		case "systempaths":
			if v != "unconfined" {
				return s, invalid("invalid --security-opt 2: %q", opt)
			}
			s.systemPathsUnconfined = true
		case "proc-opts", "writable-cgroups", "mask", "unmask":
			return s, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("--security-opt %s is not supported by berth", k))
		default:
			return s, invalid("invalid --security-opt 2: %q", opt)
		}
	}
	return s, nil
}

// mergeImage completes cfg with the image's config, as dockerd's merge:
// user settings win; env, exposed ports, labels and volumes are unions.
func mergeImage(cfg *container.Config, img ocispec.ImageConfig, ext dockerspec.DockerOCIImageConfigExt) {
	if cfg.User == "" {
		cfg.User = img.User
	}
	if len(cfg.ExposedPorts) == 0 && len(img.ExposedPorts) > 0 {
		cfg.ExposedPorts = network.PortSet{}
	}
	for p := range img.ExposedPorts {
		port, err := network.ParsePort(p)
		if err != nil {
			continue
		}
		if _, ok := cfg.ExposedPorts[port]; !ok {
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	if len(cfg.Env) == 0 {
		cfg.Env = slices.Clone(img.Env)
	} else {
		for _, ie := range img.Env {
			ik, _, _ := strings.Cut(ie, "=")
			if !slices.ContainsFunc(cfg.Env, func(ue string) bool { uk, _, _ := strings.Cut(ue, "="); return uk == ik }) {
				cfg.Env = append(cfg.Env, ie)
			}
		}
	}
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	for k, v := range img.Labels {
		if _, ok := cfg.Labels[k]; !ok {
			cfg.Labels[k] = v
		}
	}
	if len(cfg.Entrypoint) == 0 {
		if len(cfg.Cmd) == 0 {
			cfg.Cmd = slices.Clone(img.Cmd)
		}
		if cfg.Entrypoint == nil {
			cfg.Entrypoint = slices.Clone(img.Entrypoint)
		}
	}
	if ih := ext.Healthcheck; ih != nil {
		if cfg.Healthcheck == nil {
			h := container.HealthConfig(*ih)
			cfg.Healthcheck = &h
		} else {
			h := cfg.Healthcheck
			if len(h.Test) == 0 {
				h.Test = ih.Test
			}
			if h.Interval == 0 {
				h.Interval = ih.Interval
			}
			if h.Timeout == 0 {
				h.Timeout = ih.Timeout
			}
			if h.StartPeriod == 0 {
				h.StartPeriod = ih.StartPeriod
			}
			if h.StartInterval == 0 {
				h.StartInterval = ih.StartInterval
			}
			if h.Retries == 0 {
				h.Retries = ih.Retries
			}
		}
	}
	if cfg.WorkingDir == "" {
		cfg.WorkingDir = img.WorkingDir
	}
	if len(cfg.Volumes) == 0 && len(img.Volumes) > 0 {
		cfg.Volumes = map[string]struct{}{}
	}
	maps.Copy(cfg.Volumes, img.Volumes)
	if cfg.StopSignal == "" {
		cfg.StopSignal = img.StopSignal
	}
	if len(cfg.OnBuild) == 0 {
		cfg.OnBuild = ext.OnBuild
	}
	if len(cfg.Shell) == 0 {
		cfg.Shell = ext.Shell
	}
}

// command resolves the process's command line after the merge: an
// entrypoint of [""] means none.
func command(cfg *container.Config) (string, []string, error) {
	if len(cfg.Entrypoint) == 1 && cfg.Entrypoint[0] == "" {
		cfg.Entrypoint = nil
	}
	argv := slices.Concat([]string(cfg.Entrypoint), []string(cfg.Cmd))
	if len(argv) == 0 {
		return "", nil, invalid("no command specified")
	}
	return argv[0], argv[1:], nil
}

// rlimitNames are the --ulimit names (Docker's, from go-units).
var rlimitNames = map[string]string{
	"as": "RLIMIT_AS", "core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA",
	"fsize": "RLIMIT_FSIZE", "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
	"nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
	"rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING", "stack": "RLIMIT_STACK",
}

// errNotRunning is Docker's message for an operation that needs a running
// container.
func errNotRunning(id string) error {
	return errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", id))
}
