package main

import (
	"errors"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

// newContextUseCommand replaces `docker context use`, which makes a context
// the current one in config.json. berth never follows the current context
// (endpoint.go), so docker's verb would silently switch docker's daemon and
// not berth's. Say so, and say what to do instead.
func newContextUseCommand(_ command.Cli, docker *cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "use CONTEXT",
		Short: "Set the current docker context (not supported by berth)",
		Args:  cli.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return errors.New(`berth has no current context: name one with "berth --context ` + args[0] + ` ..." or set ` + envHost + `; "docker context use" sets docker's`)
		},
	}
	if docker != nil {
		cmd.ValidArgsFunction = docker.ValidArgsFunction
	}
	return cmd
}
