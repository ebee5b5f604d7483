package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

type imagesOptions struct {
	quiet, all, digests, noTrunc bool
	format                       string
	filters                      []string
}

func (c *cli) imagesCommand(use string) *cobra.Command {
	var o imagesOptions
	cmd := &cobra.Command{
		Use:   use + " [OPTIONS] [REPOSITORY[:TAG]]",
		Short: "List images",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.images(cmd, o, args)
		},
	}
	f := cmd.Flags()
	f.BoolVarP(&o.quiet, "quiet", "q", false, "only show image IDs")
	f.BoolVarP(&o.all, "all", "a", false, "show all images")
	f.BoolVar(&o.digests, "digests", false, "show digests")
	f.BoolVar(&o.noTrunc, "no-trunc", false, "don't truncate output")
	f.StringVar(&o.format, "format", "", "format output using a Go template, 'table', 'table TEMPLATE' or 'json'")
	f.StringArrayVarP(&o.filters, "filter", "f", nil, "filter output based on conditions provided")
	return cmd
}

func (c *cli) images(cmd *cobra.Command, o imagesOptions, args []string) error {
	filters := client.Filters{}
	for _, f := range o.filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return fmt.Errorf("bad format of filter (expected name=value): %s", f)
		}
		filters.Add(k, v)
	}
	if len(args) == 1 {
		filters.Add("reference", args[0])
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	res, err := api.ImageList(cmd.Context(), client.ImageListOptions{All: o.all, Filters: filters})
	if err != nil {
		return err
	}
	rows := imageRows(res.Items, time.Now(), o.noTrunc)

	if o.quiet {
		seen := map[string]bool{}
		for _, r := range rows {
			if !seen[r.ID] {
				seen[r.ID] = true
				fmt.Fprintln(c.out, r.ID)
			}
		}
		return nil
	}
	format := o.format
	switch format {
	case "", "table":
		format = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		if o.digests {
			format = "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
		}
	}
	tmpl, table, err := parseTemplate(format)
	if err != nil {
		return err
	}
	list := make([]any, len(rows))
	for i := range rows {
		list[i] = rows[i]
	}
	return writeFormatted(c.out, tmpl, table, imageHeader(), list)
}

// imageRow is one line of `images`; its fields are docker's template names.
// They are in alphabetical order because docker's {{json .}} prints them so.
type imageRow struct {
	Containers   string
	CreatedAt    string
	CreatedSince string
	Digest       string
	ID           string
	Repository   string
	SharedSize   string
	Size         string
	Tag          string
	UniqueSize   string
	VirtualSize  string
}

// imageHeader renders the column titles of a "table" template.
func imageHeader() map[string]string {
	return map[string]string{
		"Containers": "CONTAINERS", "CreatedAt": "CREATED AT", "CreatedSince": "CREATED",
		"Digest": "DIGEST", "ID": "IMAGE ID", "Repository": "REPOSITORY", "SharedSize": "SHARED SIZE",
		"Size": "SIZE", "Tag": "TAG", "UniqueSize": "UNIQUE SIZE", "VirtualSize": "VIRTUAL SIZE",
	}
}

// imageRows expands summaries into docker's rows: one per tag, else one per
// repo digest, else a single <none>:<none>.
func imageRows(items []image.Summary, now time.Time, noTrunc bool) []imageRow {
	var rows []imageRow
	for _, s := range items {
		created := time.Unix(s.Created, 0)
		base := imageRow{
			Containers:   "N/A",
			CreatedAt:    created.Format("2006-01-02 15:04:05 -0700 MST"),
			CreatedSince: since(created, now),
			Digest:       "<none>",
			ID:           shortID(s.ID),
			Repository:   "<none>",
			SharedSize:   "N/A",
			Size:         humanSize(s.Size),
			Tag:          "<none>",
			UniqueSize:   "N/A",
			VirtualSize:  humanSize(s.Size),
		}
		if noTrunc {
			base.ID = s.ID
		}
		if s.Containers >= 0 {
			base.Containers = fmt.Sprint(s.Containers)
		}
		digests := map[string]string{} // repository -> digest
		for _, rd := range s.RepoDigests {
			if n, err := reference.ParseNormalizedNamed(rd); err == nil {
				if d, ok := n.(reference.Digested); ok {
					digests[reference.FamiliarName(n)] = d.Digest().String()
				}
			}
		}
		for _, rt := range s.RepoTags {
			n, err := reference.ParseNormalizedNamed(rt)
			if err != nil {
				continue
			}
			r := base
			r.Repository = reference.FamiliarName(n)
			if t, ok := n.(reference.Tagged); ok {
				r.Tag = t.Tag()
			}
			if d, ok := digests[r.Repository]; ok {
				r.Digest = d
			}
			rows = append(rows, r)
		}
		if len(s.RepoTags) == 0 {
			for _, repo := range slices.Sorted(maps.Keys(digests)) {
				r := base
				d := digests[repo]
				r.Repository, r.Digest = repo, d
				rows = append(rows, r)
			}
		}
		if len(s.RepoTags) == 0 && len(digests) == 0 {
			rows = append(rows, base)
		}
	}
	return rows
}
