package main

import (
	"fmt"
	"runtime"
	"text/template"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

// versionInfo is what `version --format` templates see, shaped like docker's.
type versionInfo struct {
	Client clientVersion
	Server *serverVersion
}

type serverVersion struct {
	Platform      struct{ Name string }
	Version       string
	APIVersion    string `json:"ApiVersion"`
	MinAPIVersion string
	GoVersion     string
	Os            string
	Arch          string
	KernelVersion string
}

// serverVersionOf flattens the daemon's answer; Go and kernel versions live
// in the Engine component's details.
func serverVersionOf(r client.ServerVersionResult) *serverVersion {
	v := &serverVersion{Version: r.Version, APIVersion: r.APIVersion, MinAPIVersion: r.MinAPIVersion, Os: r.Os, Arch: r.Arch}
	v.Platform.Name = r.Platform.Name
	for _, c := range r.Components {
		if c.Name == "Engine" {
			v.GoVersion, v.KernelVersion = c.Details["GoVersion"], c.Details["KernelVersion"]
		}
	}
	return v
}

type clientVersion struct {
	Version    string
	APIVersion string `json:"ApiVersion"`
	GoVersion  string
	Os         string
	Arch       string
}

const versionTemplate = `Client:
 Version:	{{.Client.Version}}
 API version:	{{.Client.APIVersion}}
 Go version:	{{.Client.GoVersion}}
 OS/Arch:	{{.Client.Os}}/{{.Client.Arch}}
{{- if .Server}}

Server: {{.Server.Platform.Name}}
 Engine:
  Version:	{{.Server.Version}}
  API version:	{{.Server.APIVersion}} (minimum version {{.Server.MinAPIVersion}})
  Go version:	{{.Server.GoVersion}}
  OS/Arch:	{{.Server.Os}}/{{.Server.Arch}}
  Kernel:	{{.Server.KernelVersion}}
{{- end}}
`

func (c *cli) versionCommand() *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "version [OPTIONS]",
		Short: "Show the berth version information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			api, err := c.client()
			if err != nil {
				return err
			}
			v := versionInfo{Client: clientVersion{
				Version: version, GoVersion: runtime.Version(), Os: runtime.GOOS, Arch: runtime.GOARCH,
			}}
			sv, serverErr := api.ServerVersion(cmd.Context(), client.ServerVersionOptions{})
			v.Client.APIVersion = api.ClientVersion()
			if serverErr == nil {
				v.Server = serverVersionOf(sv)
			}
			var tmpl *template.Template
			if format == "" {
				tmpl, err = template.New("version").Parse(versionTemplate)
			} else {
				tmpl, _, err = parseTemplate(format)
			}
			if err != nil {
				return err
			}
			tw := newTabWriter(c.out)
			if err := tmpl.Execute(tw, v); err != nil {
				return fmt.Errorf("template: %w", err)
			}
			if format != "" {
				fmt.Fprintln(tw)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			return serverErr
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "", "format output using a Go template or 'json'")
	return cmd
}
