package main

import (
	"fmt"

	"github.com/distribution/reference"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
)

type pushOptions struct {
	quiet, allTags bool
}

func (c *cli) pushCommand() *cobra.Command {
	var o pushOptions
	cmd := &cobra.Command{
		Use:   "push [OPTIONS] NAME[:TAG]",
		Short: "Upload an image to a registry",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.push(cmd, o, args[0])
		},
	}
	cmd.Flags().BoolVarP(&o.quiet, "quiet", "q", false, "suppress verbose output")
	cmd.Flags().BoolVarP(&o.allTags, "all-tags", "a", false, "push all tags of an image to the repository")
	return cmd
}

func (c *cli) push(cmd *cobra.Command, o pushOptions, name string) error {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return fmt.Errorf("invalid reference format: %w", err)
	}
	if o.allTags {
		if _, ok := named.(reference.Tagged); ok {
			return fmt.Errorf("tag can't be used with --all-tags/-a")
		}
	} else {
		named = reference.TagNameOnly(named)
	}
	auth, err := c.encodedAuth(name)
	if err != nil {
		return err
	}
	api, err := c.client()
	if err != nil {
		return err
	}
	resp, err := api.ImagePush(cmd.Context(), named.String(), client.ImagePushOptions{All: o.allTags, RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer resp.Close()
	if err := c.displayStream(resp, o.quiet); err != nil {
		return err
	}
	if o.quiet {
		fmt.Fprintln(c.out, named.String())
	}
	return nil
}
