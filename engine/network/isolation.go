package network

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Isolation between networks, as Docker's DOCKER-ISOLATION-STAGE-1/2: a
// packet that enters from one Berth bridge and leaves through another is
// dropped, unless it was DNATed (a published port, reached from another
// network through the host's address). Internal networks drop everything
// that crosses their bridge; a network without ICC drops traffic between
// its own containers. Every rule carries the comment "berth <network id>"
// so that removing a network, or start-up after a crash, finds them all.
// The firewall plugin's own ingressPolicy would do the first part, but it
// never removes its rules.
const (
	chainStage1 = "BERTH-ISOLATION-1"
	chainStage2 = "BERTH-ISOLATION-2"
)

// iptables runs one command of the family's binary, waiting for the xtables
// lock.
func (m *Manager) iptables(v6 bool, args ...string) (string, error) {
	bin := m.cfg.IPTables
	if v6 {
		bin = m.cfg.IP6Tables
	}
	cmd := exec.Command(bin, append([]string{"-w", "5"}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

func ruleComment(n *Network) []string {
	return []string{"-m", "comment", "--comment", "berth " + n.ID}
}

// families are the iptables families a network needs.
func families(n *Network) []bool {
	if _, ok := n.subnet6(); ok {
		return []bool{false, true}
	}
	return []bool{false}
}

// ensureChains creates the isolation chains and FORWARD's jump to them,
// first in FORWARD (before the firewall plugin's CNI-FORWARD accepts).
func (m *Manager) ensureChains(v6 bool) error {
	for _, c := range []string{chainStage1, chainStage2} {
		if _, err := m.iptables(v6, "-t", "filter", "-S", c); err != nil {
			if _, err := m.iptables(v6, "-t", "filter", "-N", c); err != nil {
				// Made by a concurrent daemon between the two calls?
				if _, err2 := m.iptables(v6, "-t", "filter", "-S", c); err2 != nil {
					return err
				}
			}
		}
	}
	if _, err := m.iptables(v6, "-t", "filter", "-C", "FORWARD", "-j", chainStage1); err != nil {
		if _, err := m.iptables(v6, "-t", "filter", "-I", "FORWARD", "1", "-j", chainStage1); err != nil {
			return err
		}
	}
	// Published ports reach a container from any network.
	dnat := []string{"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN"}
	if _, err := m.iptables(v6, append([]string{"-t", "filter", "-C", chainStage1}, dnat...)...); err != nil {
		if _, err := m.iptables(v6, append([]string{"-t", "filter", "-I", chainStage1, "1"}, dnat...)...); err != nil {
			return err
		}
	}
	return nil
}

// isolationRules are n's rules: chain, whether they go first, and the
// match.
func isolationRules(n *Network) []struct {
	chain string
	first bool
	rule  []string
} {
	type r = struct {
		chain string
		first bool
		rule  []string
	}
	br := n.Bridge
	var out []r
	if n.Internal {
		// Before the DNAT exemption: nothing crosses an internal bridge.
		out = append(out,
			r{chainStage1, true, []string{"-i", br, "!", "-o", br, "-j", "DROP"}},
			r{chainStage1, true, []string{"-o", br, "!", "-i", br, "-j", "DROP"}},
		)
	} else {
		out = append(out,
			r{chainStage1, false, []string{"-i", br, "!", "-o", br, "-j", chainStage2}},
			r{chainStage2, false, []string{"-o", br, "-j", "DROP"}},
		)
	}
	if !n.ICC {
		out = append(out, r{chainStage1, true, []string{"-i", br, "-o", br, "-j", "DROP"}})
	}
	return out
}

// ensureIsolation adds n's rules that are missing.
func (m *Manager) ensureIsolation(n *Network) error {
	for _, v6 := range families(n) {
		if err := m.ensureChains(v6); err != nil {
			return fmt.Errorf("isolate network %s: %w", n.Name, err)
		}
		for _, r := range isolationRules(n) {
			rule := append(append([]string{}, r.rule...), ruleComment(n)...)
			if _, err := m.iptables(v6, append([]string{"-t", "filter", "-C", r.chain}, rule...)...); err == nil {
				continue
			}
			args := []string{"-t", "filter", "-A", r.chain}
			if r.first {
				args = []string{"-t", "filter", "-I", r.chain, "1"}
			}
			if _, err := m.iptables(v6, append(args, rule...)...); err != nil {
				return fmt.Errorf("isolate network %s: %w", n.Name, err)
			}
		}
	}
	return nil
}

// removeIsolation deletes every rule that carries n's comment, in both
// families (a network's IPv6 rules may outlive a changed record).
func (m *Manager) removeIsolation(n *Network) error {
	marker := `"berth ` + n.ID + `"`
	for _, v6 := range []bool{false, true} {
		for _, chain := range []string{chainStage1, chainStage2} {
			out, err := m.iptables(v6, "-t", "filter", "-S", chain)
			if err != nil {
				continue // no chain, no rules
			}
			for _, line := range strings.Split(out, "\n") {
				if !strings.Contains(line, marker) || !strings.HasPrefix(line, "-A ") {
					continue
				}
				args, err := splitRule(strings.TrimPrefix(line, "-A "))
				if err != nil {
					return fmt.Errorf("remove isolation of network %s: %w", n.Name, err)
				}
				if _, err := m.iptables(v6, append([]string{"-t", "filter", "-D"}, args...)...); err != nil {
					return fmt.Errorf("remove isolation of network %s: %w", n.Name, err)
				}
			}
		}
	}
	return nil
}

// splitRule splits an iptables -S line into arguments, honouring the
// double quotes iptables puts around comments.
func splitRule(s string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
			have = true
		case c == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
			have = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quotes in iptables rule %q", s)
	}
	if have {
		out = append(out, cur.String())
	}
	return out, nil
}

// removeMasquerade deletes the bridge plugin's ipMasq rules of one
// attachment: the POSTROUTING jump and the per-container chain, both
// commented `name: "<network>" id: "<container>"`. The plugin's DEL finds
// the container's addresses on its veth, so with the namespace gone it
// leaves them (containernetworking/plugins#810); the manager then calls
// this after the DEL.
func (m *Manager) removeMasquerade(network, id string) error {
	marker := `name: \"` + network + `\" id: \"` + id + `\"`
	var errs []error
	for _, v6 := range []bool{false, true} {
		out, err := m.iptables(v6, "-t", "nat", "-S")
		if err != nil {
			continue
		}
		chains := map[string]bool{}
		for _, line := range strings.Split(out, "\n") {
			if !strings.Contains(line, marker) || !strings.HasPrefix(line, "-A ") {
				continue
			}
			args, err := splitRule(strings.TrimPrefix(line, "-A "))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			if len(args) > 0 && args[0] != "POSTROUTING" {
				chains[args[0]] = true
				continue
			}
			for i, a := range args {
				if a == "-j" && i+1 < len(args) {
					chains[args[i+1]] = true
				}
			}
			if _, err := m.iptables(v6, append([]string{"-t", "nat", "-D"}, args...)...); err != nil {
				errs = append(errs, err)
			}
		}
		for c := range chains {
			if !strings.HasPrefix(c, "CNI-") {
				continue
			}
			if _, err := m.iptables(v6, "-t", "nat", "-F", c); err != nil {
				errs = append(errs, err)
				continue
			}
			if _, err := m.iptables(v6, "-t", "nat", "-X", c); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
