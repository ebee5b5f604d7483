package main

import (
	"fmt"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

const infoTemplate = `Server:
 Server Version:	{{.ServerVersion}}
 Images:	{{.Images}}
 Storage Driver:	{{.Driver}}
 Logging Driver:	{{.LoggingDriver}}
 Cgroup Driver:	{{.CgroupDriver}}
 Cgroup Version:	{{.CgroupVersion}}
 Kernel Version:	{{.KernelVersion}}
 Operating System:	{{.OperatingSystem}}
 OSType:	{{.OSType}}
 Architecture:	{{.Architecture}}
 CPUs:	{{.NCPU}}
 Total Memory:	{{humanSize .MemTotal}}
 Name:	{{.Name}}
 Berth Root Dir:	{{.DockerRootDir}}
{{- range .Warnings}}
WARNING: {{.}}
{{- end}}
`

func (c *cli) infoCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "info [OPTIONS]",
		Short: "Display system-wide information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			res, err := api.Info(cmd.Context(), client.InfoOptions{})
			if err != nil {
				return err
			}
			f := format
			if f == "" {
				f = infoTemplate
			}
			tmpl, _, err := parseTemplate(f)
			if err != nil {
				return err
			}
			tw := newTabWriter(c.out)
			if err := tmpl.Execute(tw, res.Info); err != nil {
				return fmt.Errorf("template: %w", err)
			}
			if format != "" {
				fmt.Fprintln(tw)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	return cmd
}
