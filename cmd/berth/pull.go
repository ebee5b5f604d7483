package main

import (
	"fmt"
	"strings"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/spf13/cobra"
)

type pullOptions struct {
	quiet    bool
	platform string
}

func (c *cli) pullCommand() *cobra.Command {
	var o pullOptions
	cmd := &cobra.Command{
		Use:   "pull [OPTIONS] NAME[:TAG|@DIGEST]",
		Short: "Download an image from a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.pull(cmd, o, args[0])
		},
	}
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress verbose output")
	cmd.Flags().StringVar(&o.platform, "platform", "", "set platform if server is multi-platform capable (os[/arch[/variant]])")
	return cmd
}

func (c *cli) pull(cmd *cobra.Command, o pullOptions, name string) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("invalid reference format: %w", err)
	}
	named = reference.TagNameOnly(named)
	auth, err := c.encodedAuth(name)
	if err != nil {
		return err
	}
	opts := client.ImagePullOptions{RegistryAuth: auth}
	if o.platform != "" {
		p, err := platformOf(o.platform)
		if err != nil {
			return err
		}
		opts.Platforms = []ocispec.Platform{p}
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	resp, err := api.ImagePull(cmd.Context(), named.String(), opts)
	if err != nil {
		return err
	}
	defer resp.Close()
	if err := c.displayStream(resp, o.quiet); err != nil {
		return err
	}
	fmt.Fprintln(c.out, named.String())
	return nil
}

func platformOf(s string) (ocispec.Platform, error) {
	var p ocispec.Platform
	parts := strings.SplitN(s, "/", 3)
	if len(parts) == 0 || parts[0] == "" {
		return p, fmt.Errorf("invalid platform %q: want os[/arch[/variant]]", s)
	}
	p.OS = parts[0]
	if len(parts) > 1 {
		p.Architecture = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	return p, nil
}
