package network

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Each network's rules, made when it is set up and removed with it, as
// Docker's bridge driver does (the CNI plugins' per-container rules cost
// tens of milliseconds per container start and stop):
//
//   - isolation (BERTH-ISOLATION-1/2, jumped to first from FORWARD): a
//     packet that enters from one Berth bridge and leaves through another
//     is dropped, unless it was DNATed (a published port, reached from
//     another network through the host's address); an internal network
//     drops everything that crosses its bridge; a network without ICC
//     drops traffic between its own containers;
//   - forwarding (BERTH-FORWARD, jumped to after isolation): what leaves a
//     bridge, replies to it and published ports going in are accepted, so
//     that containers work under a FORWARD policy of DROP (dockerd sets
//     it);
//   - masquerading (BERTH-POSTROUTING in nat): what leaves the network's
//     subnet through another interface is NATed to the host's address.
//
// Every rule carries the comment "berth <network id>" so that removing a
// network, or start-up after a crash, finds them all. The firewall
// plugin's ingressPolicy would do the isolation, but it never removes its
// rules.
const (
	chainStage1  = "BERTH-ISOLATION-1"
	chainStage2  = "BERTH-ISOLATION-2"
	chainForward = "BERTH-FORWARD"
	chainNAT     = "BERTH-POSTROUTING"
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

// ensureChains creates the chains and the jumps to them: isolation first
// in FORWARD (before anything that accepts), forwarding right after it,
// masquerading in POSTROUTING.
func (m *Manager) ensureChains(v6 bool) error {
	for _, c := range []struct{ table, chain string }{
		{"filter", chainStage1}, {"filter", chainStage2}, {"filter", chainForward}, {"nat", chainNAT},
	} {
		if _, err := m.iptables(v6, "-t", c.table, "-S", c.chain); err != nil {
			if _, err := m.iptables(v6, "-t", c.table, "-N", c.chain); err != nil {
				// Made by a concurrent daemon between the two calls?
				if _, err2 := m.iptables(v6, "-t", c.table, "-S", c.chain); err2 != nil {
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
	if _, err := m.iptables(v6, "-t", "filter", "-C", "FORWARD", "-j", chainForward); err != nil {
		// Right after the isolation jump, wherever that is now (dockerd
		// inserts its own jumps first).
		pos := "2"
		if out, err := m.iptables(v6, "-t", "filter", "-S", "FORWARD"); err == nil {
			n := 0
			for _, line := range strings.Split(out, "\n") {
				if !strings.HasPrefix(line, "-A ") {
					continue
				}
				n++
				if strings.HasSuffix(line, "-j "+chainStage1) {
					pos = fmt.Sprint(n + 1)
				}
			}
		}
		if _, err := m.iptables(v6, "-t", "filter", "-I", "FORWARD", pos, "-j", chainForward); err != nil {
			return err
		}
	}
	if _, err := m.iptables(v6, "-t", "nat", "-C", "POSTROUTING", "-j", chainNAT); err != nil {
		if _, err := m.iptables(v6, "-t", "nat", "-A", "POSTROUTING", "-j", chainNAT); err != nil {
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

// netRule is one of a network's rules.
type netRule struct {
	table, chain string
	// first: inserted at the top of the chain, else appended.
	first bool
	rule  []string
}

// networkRules are n's rules in the family v6.
func networkRules(n *Network, v6 bool) []netRule {
	br := n.Bridge
	var out []netRule
	if n.Internal {
		// Before the DNAT exemption: nothing crosses an internal bridge.
		out = append(out,
			netRule{"filter", chainStage1, true, []string{"-i", br, "!", "-o", br, "-j", "DROP"}},
			netRule{"filter", chainStage1, true, []string{"-o", br, "!", "-i", br, "-j", "DROP"}},
			netRule{"filter", chainForward, false, []string{"-i", br, "-o", br, "-j", "ACCEPT"}},
		)
	} else {
		out = append(out,
			netRule{"filter", chainStage1, false, []string{"-i", br, "!", "-o", br, "-j", chainStage2}},
			netRule{"filter", chainStage2, false, []string{"-o", br, "-j", "DROP"}},
			netRule{"filter", chainForward, false, []string{"-i", br, "-j", "ACCEPT"}},
			netRule{"filter", chainForward, false, []string{"-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "ACCEPT"}},
		)
	}
	if !n.ICC {
		out = append(out, netRule{"filter", chainStage1, true, []string{"-i", br, "-o", br, "-j", "DROP"}})
	}
	if n.Masquerade && !n.Internal {
		for _, c := range n.IPAM.Config {
			if c.Subnet.Addr().Is6() == v6 {
				out = append(out, netRule{"nat", chainNAT, false, []string{"-s", c.Subnet.String(), "!", "-o", br, "-j", "MASQUERADE"}})
			}
		}
	}
	return out
}

// ensureIsolation adds n's rules that are missing.
func (m *Manager) ensureIsolation(n *Network) error {
	for _, v6 := range families(n) {
		if err := m.ensureChains(v6); err != nil {
			return fmt.Errorf("firewall rules of network %s: %w", n.Name, err)
		}
		for _, r := range networkRules(n, v6) {
			rule := append(append([]string{}, r.rule...), ruleComment(n)...)
			if _, err := m.iptables(v6, append([]string{"-t", r.table, "-C", r.chain}, rule...)...); err == nil {
				continue
			}
			args := []string{"-t", r.table, "-A", r.chain}
			if r.first {
				args = []string{"-t", r.table, "-I", r.chain, "1"}
			}
			if _, err := m.iptables(v6, append(args, rule...)...); err != nil {
				return fmt.Errorf("firewall rules of network %s: %w", n.Name, err)
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
		for _, c := range []struct{ table, chain string }{
			{"filter", chainStage1}, {"filter", chainStage2}, {"filter", chainForward}, {"nat", chainNAT},
		} {
			out, err := m.iptables(v6, "-t", c.table, "-S", c.chain)
			if err != nil {
				continue // no chain, no rules
			}
			for _, line := range strings.Split(out, "\n") {
				if !strings.Contains(line, marker) || !strings.HasPrefix(line, "-A ") {
					continue
				}
				args, err := splitRule(strings.TrimPrefix(line, "-A "))
				if err != nil {
					return fmt.Errorf("remove firewall rules of network %s: %w", n.Name, err)
				}
				if _, err := m.iptables(v6, append([]string{"-t", c.table, "-D"}, args...)...); err != nil {
					return fmt.Errorf("remove firewall rules of network %s: %w", n.Name, err)
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
