package main

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

func (c *cli) inspectCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "inspect [OPTIONS] IMAGE [IMAGE...]",
		Short: "Display detailed information on one or more images",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.inspect(cmd, format, args)
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	return cmd
}

// inspect prints the daemon's JSON for each image as one indented array, or
// a --format template per image. A template runs on the typed response and,
// when that fails (users write {{.Id}}, the JSON name), on the raw JSON
// object, as docker does.
func (c *cli) inspect(cmd *cobra.Command, format string, names []string) error {
	api, err := c.client()
	if err != nil {
		return err
	}
	type found struct {
		typed any
		raw   map[string]any
		json  json.RawMessage
	}
	var items []found
	failed := false
	for _, name := range names {
		var raw bytes.Buffer
		res, err := api.ImageInspect(cmd.Context(), name, client.ImageInspectWithRawResponse(&raw))
		if err != nil {
			fmt.Fprintln(c.err, errorLine(err))
			failed = true
			continue
		}
		f := found{typed: res.InspectResponse, json: bytes.TrimSpace(raw.Bytes())}
		if err := json.Unmarshal(f.json, &f.raw); err != nil {
			return fmt.Errorf("decode inspect response for %s: %w", name, err)
		}
		items = append(items, f)
	}

	if format == "" || format == "json" {
		list := make([]json.RawMessage, len(items))
		for i, it := range items {
			list[i] = it.json
		}
		b, err := json.MarshalIndent(list, "", "    ")
		if err != nil {
			return err
		}
		fmt.Fprintln(c.out, string(b))
	} else {
		tmpl, _, err := parseTemplate(format)
		if err != nil {
			return err
		}
		for _, it := range items {
			var buf bytes.Buffer
			if err := tmpl.Execute(&buf, it.typed); err != nil {
				buf.Reset()
				if err := tmpl.Execute(&buf, it.raw); err != nil {
					return fmt.Errorf("template: %w", err)
				}
			}
			fmt.Fprintln(c.out, buf.String())
		}
	}
	if failed {
		return exitError{code: 1}
	}
	return nil
}
