// Package importcheck enforces Berth's import boundaries (DESIGN.md,
// STYLE.md rule 2). It has no API: its test lists the module's packages with
// `go list -deps` and fails when a package picks up a forbidden import, so
// `make test` and CI catch a boundary break the moment it is committed.
package importcheck

import "strings"

// Package is what `go list -json` says of one package.
type Package struct {
	ImportPath string
	Imports    []string // direct
	Deps       []string // transitive
}

// Rule forbids packages under From to import anything under Forbid.
type Rule struct {
	// From and Forbid are import path prefixes (a path matches its own
	// prefix and everything below it).
	From   string
	Forbid string
	// Except lists prefixes under From that the rule does not apply to.
	Except []string
	// Direct restricts the rule to direct imports; otherwise the transitive
	// dependencies count too.
	Direct bool
	// Why is printed with a violation.
	Why string
}

// under reports whether path is prefix or below it.
func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// Violations returns one line per package and forbidden import.
func Violations(pkgs []Package, rules []Rule) []string {
	var out []string
	for _, p := range pkgs {
		for _, r := range rules {
			if !under(p.ImportPath, r.From) || r.From == "" {
				continue
			}
			excepted := false
			for _, e := range r.Except {
				if under(p.ImportPath, e) {
					excepted = true
				}
			}
			if excepted {
				continue
			}
			imps := p.Deps
			if r.Direct {
				imps = p.Imports
			}
			for _, imp := range imps {
				if under(imp, r.Forbid) {
					out = append(out, p.ImportPath+" imports "+imp+": "+r.Why)
				}
			}
		}
	}
	return out
}
