package network

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
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
// Published ports are rules of the container's (publish.go): DNAT in
// BERTH-DNAT, jumped to from nat PREROUTING and OUTPUT for local
// addresses.
//
// Every rule carries the comment "berth <network id>" (a published port's
// "berth <network id> <container id>") so that removing a network, or
// start-up after a crash, finds them all. The firewall plugin's
// ingressPolicy would do the isolation, but it never removes its rules.
//
// Rules change in batches: one iptables-save reads a family's tables and
// one iptables-restore --noflush applies a whole change set, atomically
// (one transaction with the nft backend, one commit per table with the
// legacy one). Each iptables run costs a few milliseconds of exec and
// ruleset parsing, tens under load; a network's removal made a dozen of
// them. The shared chains and the jumps to them are still made one
// command at a time, when missing: declaring a chain in a --noflush
// restore flushes it when it exists, and another berthd may have just
// made it and filled it.
const (
	chainStage1  = "BERTH-ISOLATION-1"
	chainStage2  = "BERTH-ISOLATION-2"
	chainForward = "BERTH-FORWARD"
	chainNAT     = "BERTH-POSTROUTING"
	chainDNAT    = "BERTH-DNAT"
)

// sharedChains are the chains every network's and port's rules live in.
var sharedChains = []struct{ table, chain string }{
	{"filter", chainStage1}, {"filter", chainStage2}, {"filter", chainForward}, {"nat", chainNAT}, {"nat", chainDNAT},
}

// iptablesBin is the family's iptables command; suffix "-save" or
// "-restore" names its companions (iptables-legacy-save and the like
// follow the same pattern).
func (m *Manager) iptablesBin(v6 bool, suffix string) string {
	bin := m.cfg.IPTables
	if v6 {
		bin = m.cfg.IP6Tables
	}
	return bin + suffix
}

// iptables runs one command of the family's binary, waiting for the xtables
// lock.
func (m *Manager) iptables(v6 bool, args ...string) (string, error) {
	bin := m.iptablesBin(v6, "")
	cmd := exec.Command(bin, append([]string{"-w", "5"}, args...)...)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out.String(), nil
}

// ruleset is one family's iptables-save output: the chains and the rules
// ("-A ..." lines, as saved) of each table.
type ruleset struct {
	chains map[string]map[string]bool
	rules  map[string][]string
}

// save reads the family's tables with one iptables-save.
func (m *Manager) save(v6 bool) (*ruleset, error) {
	bin := m.iptablesBin(v6, "-save")
	cmd := exec.Command(bin)
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", bin, err, strings.TrimSpace(stderr.String()))
	}
	return parseSave(out.String()), nil
}

func parseSave(s string) *ruleset {
	rs := &ruleset{chains: map[string]map[string]bool{}, rules: map[string][]string{}}
	table := ""
	for _, line := range strings.Split(s, "\n") {
		switch {
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			if rs.chains[table] == nil {
				rs.chains[table] = map[string]bool{}
			}
		case strings.HasPrefix(line, ":") && table != "":
			if name, _, ok := strings.Cut(line[1:], " "); ok {
				rs.chains[table][name] = true
			}
		case strings.HasPrefix(line, "-A ") && table != "":
			rs.rules[table] = append(rs.rules[table], line)
		}
	}
	return rs
}

// has reports whether table holds the rule line (as iptables-save prints
// it, without "-A ").
func (rs *ruleset) has(table, rule string) bool {
	for _, l := range rs.rules[table] {
		if l[3:] == rule {
			return true
		}
	}
	return false
}

// batch is an iptables-restore --noflush input: rule commands by table.
type batch struct {
	tables []string
	lines  map[string][]string
}

// add appends a command ("-A", "-I", "-D" and its arguments) to table.
func (b *batch) add(table string, args ...string) {
	b.addLine(table, quoteArgs(args))
}

// addLine appends a command line already in iptables-save's quoting.
func (b *batch) addLine(table, line string) {
	if b.lines == nil {
		b.lines = map[string][]string{}
	}
	if _, ok := b.lines[table]; !ok {
		b.tables = append(b.tables, table)
	}
	b.lines[table] = append(b.lines[table], line)
}

func (b *batch) empty() bool { return len(b.tables) == 0 }

func (b *batch) String() string {
	var s strings.Builder
	for _, t := range b.tables {
		s.WriteString("*" + t + "\n")
		for _, l := range b.lines[t] {
			s.WriteString(l + "\n")
		}
		s.WriteString("COMMIT\n")
	}
	return s.String()
}

// quoteArgs joins arguments as iptables-restore reads them: an argument
// with a space, a quote or a backslash (a comment) is double-quoted, with
// quotes and backslashes escaped.
func quoteArgs(args []string) string {
	var s strings.Builder
	for i, a := range args {
		if i > 0 {
			s.WriteByte(' ')
		}
		if a != "" && !strings.ContainsAny(a, " \t\"\\'") {
			s.WriteString(a)
			continue
		}
		s.WriteByte('"')
		for _, c := range []byte(a) {
			if c == '"' || c == '\\' {
				s.WriteByte('\\')
			}
			s.WriteByte(c)
		}
		s.WriteByte('"')
	}
	return s.String()
}

// restore applies b with one iptables-restore --noflush of the family.
func (m *Manager) restore(v6 bool, b *batch) error {
	if b.empty() {
		return nil
	}
	bin := m.iptablesBin(v6, "-restore")
	// --wait=N: the legacy command's -w takes its argument only in this
	// form.
	cmd := exec.Command(bin, "--wait=5", "--noflush")
	in := b.String()
	cmd.Stdin = strings.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s --noflush: %w: %s (input: %q)", bin, err, strings.TrimSpace(stderr.String()), in)
	}
	return nil
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

// chainJump is a rule in a built-in chain that leads to one of ours.
type chainJump struct {
	table, chain string
	rule         []string
	// insert: at the top (or after the isolation jump), else appended.
	insert bool
}

var chainJumps = []chainJump{
	{"filter", "FORWARD", []string{"-j", chainStage1}, true},
	{"filter", "FORWARD", []string{"-j", chainForward}, true},
	{"nat", "POSTROUTING", []string{"-j", chainNAT}, false},
	{"nat", "PREROUTING", []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainDNAT}, false},
	{"nat", "OUTPUT", []string{"-m", "addrtype", "--dst-type", "LOCAL", "-j", chainDNAT}, false},
}

// chainRules are the rules of the shared chains that belong to no network:
// published ports reach a container from any network (the DNAT exemption
// first in isolation), and what a port's rules marked is masqueraded
// (hairpin and localhost connections, publish.go).
var chainRules = []netRule{
	{"filter", chainStage1, true, []string{"-m", "conntrack", "--ctstate", "DNAT", "-j", "RETURN"}},
	{"nat", chainNAT, true, []string{"-m", "mark", "--mark", masqMark, "-j", "MASQUERADE"}},
}

// ensureChains creates the shared chains, the jumps to them and their
// shared rules where rs (the family's tables, read before) lacks them:
// isolation first in FORWARD (before anything that accepts), forwarding
// right after it, masquerading in POSTROUTING, published ports from
// PREROUTING and OUTPUT. Each missing piece costs
// a command or two; on a host that has them, nothing runs.
func (m *Manager) ensureChains(v6 bool, rs *ruleset) error {
	for _, c := range sharedChains {
		if rs.chains[c.table][c.chain] {
			continue
		}
		if _, err := m.iptables(v6, "-t", c.table, "-N", c.chain); err != nil {
			// Made by a concurrent daemon between the two calls?
			if _, err2 := m.iptables(v6, "-t", c.table, "-S", c.chain); err2 != nil {
				return err
			}
		}
	}
	for _, j := range chainJumps {
		if rs.has(j.table, j.chain+" "+strings.Join(j.rule, " ")) {
			continue
		}
		if _, err := m.iptables(v6, append([]string{"-t", j.table, "-C", j.chain}, j.rule...)...); err == nil {
			continue
		}
		args := []string{"-t", j.table, "-A", j.chain}
		if j.insert {
			args = []string{"-t", j.table, "-I", j.chain, m.jumpPosition(v6, j)}
		}
		if _, err := m.iptables(v6, append(args, j.rule...)...); err != nil {
			return err
		}
	}
	for _, r := range chainRules {
		if rs.has(r.table, r.chain+" "+strings.Join(r.rule, " ")) {
			continue
		}
		if _, err := m.iptables(v6, append([]string{"-t", r.table, "-C", r.chain}, r.rule...)...); err == nil {
			continue
		}
		if _, err := m.iptables(v6, append([]string{"-t", r.table, "-I", r.chain, "1"}, r.rule...)...); err != nil {
			return err
		}
	}
	return nil
}

// jumpPosition is where an inserted jump goes: the isolation jump first,
// the forwarding one right after the isolation jump, wherever that is
// now (dockerd inserts its own jumps first).
func (m *Manager) jumpPosition(v6 bool, j chainJump) string {
	if j.rule[len(j.rule)-1] != chainForward {
		return "1"
	}
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
	return pos
}

// netRule is one of a network's rules.
type netRule struct {
	table, chain string
	// first: inserted at the top of the chain, else appended.
	first bool
	rule  []string
}

// command is the restore line that adds r with extra arguments (the
// comment).
func (r netRule) command(extra []string) []string {
	args := []string{"-A", r.chain}
	if r.first {
		args = []string{"-I", r.chain, "1"}
	}
	return append(append(args, r.rule...), extra...)
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

// networkMarker is in every rule line of network id's rules, as
// iptables-save quotes the comment.
func networkMarker(id string) string { return `"berth ` + id + `"` }

// ensureIsolation puts n's rules in place: in each family, with one read
// and one atomic restore, the rules it has now are replaced by the full
// set (none at creation; at start-up, or when the DNS responder's
// restart finds the bridge gone, whatever survived). Replacing rather
// than comparing keeps it right whatever form iptables-save gives a rule.
func (m *Manager) ensureIsolation(n *Network) error {
	for _, v6 := range families(n) {
		if err := m.ensureRules(n, v6); err != nil {
			return fmt.Errorf("firewall rules of network %s: %w", n.Name, err)
		}
	}
	return nil
}

func (m *Manager) ensureRules(n *Network, v6 bool) error {
	var last error
	// A rule deleted by someone else between the read and the restore
	// fails the batch: read again.
	for attempt := 0; attempt < 3; attempt++ {
		rs, err := m.save(v6)
		if err != nil {
			return err
		}
		if err := m.ensureChains(v6, rs); err != nil {
			return err
		}
		// Deletions name rules by their text, not their position: the
		// chains' changes above do not matter.
		var b batch
		marker := networkMarker(n.ID)
		for _, table := range []string{"filter", "nat"} {
			for _, l := range rs.rules[table] {
				if strings.Contains(l, marker) {
					b.addLine(table, "-D"+l[2:])
				}
			}
		}
		for _, r := range networkRules(n, v6) {
			b.add(r.table, r.command(ruleComment(n))...)
		}
		if last = m.restore(v6, &b); last == nil {
			return nil
		}
	}
	return last
}

// removeIsolation deletes every rule that carries n's comment, its
// published ports' included, in both families (a network's IPv6 rules may
// outlive a changed record): both families are read at once, and each is
// changed with one restore.
func (m *Manager) removeIsolation(n *Network) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, v6 := range []bool{false, true} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = m.removeRules(v6, func(l string) bool {
				return strings.Contains(l, networkMarker(n.ID)) || strings.Contains(l, portMarker(n.ID))
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove firewall rules of network %s: %w", n.Name, err)
	}
	return nil
}

// removeRules deletes the rules of the filter and nat tables that match,
// with one read and one restore. IPv6 tables that cannot be read (no
// ip6tables, IPv6 off) have no rules to remove.
func (m *Manager) removeRules(v6 bool, match func(line string) bool) error {
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		rs, err := m.save(v6)
		if err != nil {
			if v6 {
				return nil
			}
			return err
		}
		var b batch
		for _, table := range []string{"filter", "nat"} {
			for _, l := range rs.rules[table] {
				if match(l) {
					b.addLine(table, "-D"+l[2:])
				}
			}
		}
		if last = m.restore(v6, &b); last == nil {
			return nil
		}
	}
	return last
}

// removeMasquerade deletes the bridge plugin's ipMasq rules of one
// attachment: the POSTROUTING jump and the per-container chain, both
// commented `name: "<network>" id: "<container>"`. The plugin's DEL finds
// the container's addresses on its veth, so with the namespace gone it
// leaves them (containernetworking/plugins#810); the manager then calls
// this after the DEL. Berth stopped using ipMasq; attachments made
// before still have them.
func (m *Manager) removeMasquerade(network, id string) error {
	marker := `name: \"` + network + `\" id: \"` + id + `\"`
	var errs []error
	for _, v6 := range []bool{false, true} {
		rs, err := m.save(v6)
		if err != nil {
			continue
		}
		var b batch
		chains := map[string]bool{}
		for _, line := range rs.rules["nat"] {
			if !strings.Contains(line, marker) {
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
			b.addLine("nat", "-D"+line[2:])
		}
		if err := m.restore(v6, &b); err != nil {
			errs = append(errs, err)
			continue
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
