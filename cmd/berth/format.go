package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"

	"github.com/docker/go-units"
	"golang.org/x/text/cases"
	"golang.org/x/text/language"
)

// templateFuncs are the functions docker offers in --format templates.
func templateFuncs() template.FuncMap {
	return template.FuncMap{
		"json": func(v any) (string, error) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(v); err != nil {
				return "", err
			}
			return strings.TrimSpace(buf.String()), nil
		},
		"split": strings.Split,
		// join takes any slice: templates that fall back to the raw JSON
		// object see []any where the typed value had []string.
		"join": func(v any, sep string) string {
			rv := reflect.ValueOf(v)
			if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
				return fmt.Sprint(v)
			}
			parts := make([]string, rv.Len())
			for i := range parts {
				parts[i] = fmt.Sprint(rv.Index(i).Interface())
			}
			return strings.Join(parts, sep)
		},
		"title": func(s string) string { return cases.Title(language.Und).String(s) },
		"lower": strings.ToLower,
		"upper": strings.ToUpper,
		"pad": func(s string, before, after int) string {
			return strings.Repeat(" ", before) + s + strings.Repeat(" ", after)
		},
		"truncate": func(s string, n int) string {
			if len(s) > n {
				return s[:n]
			}
			return s
		},
		"println": fmt.Sprintln,
		// humanSize is Berth's own, for sizes in info and user templates.
		"humanSize": humanSize,
	}
}

// parseTemplate parses a --format value. "json" is short for "{{json .}}".
// A "table " prefix means: print the header row and align the columns.
func parseTemplate(format string) (tmpl *template.Template, table bool, err error) {
	switch {
	case format == "json":
		format = "{{json .}}"
	case strings.HasPrefix(format, "table"):
		table = true
		format = strings.TrimSpace(strings.TrimPrefix(format, "table"))
	}
	// Docker users write \t and \n literally on the command line.
	format = strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(format)
	tmpl, err = template.New("format").Funcs(templateFuncs()).Parse(format)
	if err != nil {
		return nil, false, fmt.Errorf("template parsing error: %w", err)
	}
	return tmpl, table, nil
}

// writeFormatted prints one line per row with tmpl; header, when table is
// set, is the context that renders the column titles.
func writeFormatted(out io.Writer, tmpl *template.Template, table bool, header any, rows []any) error {
	w := out
	var tw *tabwriter.Writer
	if table {
		tw = tabwriter.NewWriter(out, 10, 1, 3, ' ', 0)
		w = tw
		if err := execLine(w, tmpl, header); err != nil {
			return err
		}
	}
	for _, r := range rows {
		if err := execLine(w, tmpl, r); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func execLine(w io.Writer, tmpl *template.Template, v any) error {
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, v); err != nil {
		return fmt.Errorf("template: %w", err)
	}
	_, err := fmt.Fprintln(w, strings.TrimRight(buf.String(), "\n"))
	return err
}

// humanSize is docker's size column: decimal units, 3 significant digits.
func humanSize(n int64) string { return units.HumanSizeWithPrecision(float64(n), 3) }

// since is docker's CREATED column ("About a minute ago").
func since(t, now time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	return units.HumanDuration(now.Sub(t)) + " ago"
}

// shortID is docker's 12-hex image ID.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// newTabWriter aligns "Key:\tvalue" lines as docker's version/info do.
func newTabWriter(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
}
