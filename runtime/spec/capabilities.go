package spec

import (
	"bufio"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/capability"
)

// defaultCapabilities is containerd's (and Docker's) default set.
var defaultCapabilities = []string{
	"CAP_CHOWN",
	"CAP_DAC_OVERRIDE",
	"CAP_FSETID",
	"CAP_FOWNER",
	"CAP_MKNOD",
	"CAP_NET_RAW",
	"CAP_SETGID",
	"CAP_SETUID",
	"CAP_SETFCAP",
	"CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT",
	"CAP_KILL",
	"CAP_AUDIT_WRITE",
}

// knownCapabilities are all capabilities this build knows, "CAP_X" form.
func knownCapabilities() []string {
	known := capability.ListKnown()
	out := make([]string, 0, len(known))
	for _, c := range known {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}

// normalizeCapability turns "net_admin" or "CAP_NET_ADMIN" into
// "CAP_NET_ADMIN" and rejects names this build does not know.
func normalizeCapability(name string, known []string) (string, error) {
	n := strings.ToUpper(strings.TrimSpace(name))
	if !strings.HasPrefix(n, "CAP_") {
		n = "CAP_" + n
	}
	if !slices.Contains(known, n) {
		return "", fmt.Errorf("unknown capability %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// capabilitySet computes the process capabilities the way containerd's CRI
// plugin does: ALL in Add starts from every capability, ALL in Drop from
// none, then the named adds and drops apply.
func capabilitySet(c Capabilities, privileged bool) ([]string, error) {
	known := knownCapabilities()
	all := known
	if len(c.All) > 0 {
		all = make([]string, 0, len(c.All))
		for _, name := range c.All {
			n, err := normalizeCapability(name, known)
			if err != nil {
				return nil, fmt.Errorf("capabilities.all: %w", err)
			}
			all = append(all, n)
		}
	}
	if privileged {
		return slices.Clone(all), nil
	}

	caps := slices.Clone(defaultCapabilities)
	if containsAll(c.Add) {
		caps = slices.Clone(all)
	}
	if containsAll(c.Drop) {
		caps = nil
	}
	for _, name := range c.Add {
		if strings.EqualFold(name, "ALL") {
			continue
		}
		n, err := normalizeCapability(name, known)
		if err != nil {
			return nil, fmt.Errorf("add capability: %w", err)
		}
		if !slices.Contains(caps, n) {
			caps = append(caps, n)
		}
	}
	for _, name := range c.Drop {
		if strings.EqualFold(name, "ALL") {
			continue
		}
		n, err := normalizeCapability(name, known)
		if err != nil {
			return nil, fmt.Errorf("drop capability: %w", err)
		}
		caps = slices.DeleteFunc(caps, func(s string) bool { return s == n })
	}
	if caps == nil {
		// An empty list, not a missing one: the spec must say "no
		// capabilities" rather than let a runtime apply its own defaults.
		caps = []string{}
	}
	return caps, nil
}

func containsAll(names []string) bool {
	return slices.ContainsFunc(names, func(s string) bool { return strings.EqualFold(s, "ALL") })
}

// CurrentCapabilities returns the capability bounding set of the calling
// process, in "CAP_X" form. Pass it as Capabilities.All: a privileged
// container asks for every capability, and a capability outside the
// creator's bounding set cannot be granted (some VMs drop CAP_SYS_RESOURCE
// even for root).
func CurrentCapabilities() ([]string, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		v, ok := strings.CutPrefix(s.Text(), "CapBnd:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("read own capabilities: parse CapBnd %q: %w", v, err)
		}
		var out []string
		for _, c := range capability.ListKnown() {
			if mask&(1<<uint(c)) != 0 {
				out = append(out, "CAP_"+strings.ToUpper(c.String()))
			}
		}
		return out, nil
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	return nil, fmt.Errorf("read own capabilities: no CapBnd line in /proc/self/status: %w", errdefs.ErrNotFound)
}
