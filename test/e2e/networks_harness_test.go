package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// engineNetworks is the address space of one test daemon's standalone
// networks: a default bridge name of its own and a /21 of 10.150-199 for
// the default network and user networks (the pods' test networks use
// 10.100-149), so that parallel daemons, critest and other engineers'
// tests never meet. It goes into berthd's [network] config.
type engineNetworks struct {
	Bridge string
	Pool   *net.IPNet
}

func newEngineNetworks() engineNetworks {
	var rnd [4]byte
	rand.Read(rnd[:])
	_, pool, _ := net.ParseCIDR(fmt.Sprintf("10.%d.%d.0/21", 150+int(rnd[0])%50, int(rnd[1])&^7))
	return engineNetworks{Bridge: "bb" + hex.EncodeToString(rnd[1:]), Pool: pool}
}

// config is berthd's [network] section.
func (n engineNetworks) config() string {
	return fmt.Sprintf("[network]\ndefault_bridge = %q\ndefault_address_pools = [{base = %q, size = 24}]\n", n.Bridge, n.Pool.String())
}

// builtCNIPlugins is the plugin directory if one is there already
// (BERTH_CNI_BIN, or what `make build` made), else "": a test that only
// pulls images does not build plugins for nothing.
func builtCNIPlugins(t testing.TB) string {
	if d := os.Getenv("BERTH_CNI_BIN"); d != "" {
		if !filepath.IsAbs(d) {
			d = filepath.Join(repoRoot(t), d)
		}
		return d
	}
	if d := filepath.Join(repoRoot(t), "_output", "cni", "bin"); fileExists(filepath.Join(d, "bridge")) {
		return d
	}
	return ""
}

// cleanup removes what the daemon's networks left on the host after a
// failed test (a passing one removes its containers and networks, but the
// default bridge stays, as docker0 does): every bridge with an address in
// the pool, the rules naming those bridges or an address of the pool, and
// the NAT chains those rules jump to.
func (n engineNetworks) cleanup(t testing.TB) {
	bridges := []string{n.Bridge}
	if ifaces, err := net.Interfaces(); err == nil {
		for _, i := range ifaces {
			addrs, _ := i.Addrs()
			for _, a := range addrs {
				if ipn, ok := a.(*net.IPNet); ok && n.Pool.Contains(ipn.IP) && !slices.Contains(bridges, i.Name) {
					bridges = append(bridges, i.Name)
				}
			}
		}
	}
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		var chains []string
		for _, l := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(l, "-A ") {
				continue
			}
			args := splitQuoted(l)
			ours := false
			for i, a := range args {
				if (a == "-i" || a == "-o") && i+1 < len(args) && slices.Contains(bridges, args[i+1]) {
					ours = true
				}
				if ip, _, err := net.ParseCIDR(a); err == nil && n.Pool.Contains(ip) {
					ours = true
				}
			}
			if !ours {
				continue
			}
			args[0] = "-D"
			if out, err := exec.Command("iptables", append([]string{"-t", table}, args...)...).CombinedOutput(); err != nil {
				t.Logf("drop leftover rule %s: %v %s", l, err, out)
				continue
			}
			if i := slices.Index(args, "-j"); table == "nat" && i > 0 && i+1 < len(args) && strings.HasPrefix(args[i+1], "CNI-") && len(args[i+1]) == 28 {
				chains = append(chains, args[i+1])
			}
		}
		for _, c := range chains {
			exec.Command("iptables", "-t", table, "-F", c).Run()
			exec.Command("iptables", "-t", table, "-X", c).Run()
		}
	}
	for _, b := range bridges {
		exec.Command("ip", "link", "del", b).Run()
	}
}
