package main

import (
	dockercli "github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	composecmd "github.com/docker/compose/v5/cmd/compose"
	"github.com/docker/compose/v5/cmd/prompt"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/spf13/cobra"
)

// newComposeCommand is compose v5 itself, built in: the command tree that
// compose's plugin main (cmd/main.go) hands to docker's plugin runner, here
// given berth's CLI, so it talks to berth's daemon with berth's config and
// needs no docker-compose plugin. Its version (`berth compose version`) is
// set at link time, as compose's own build does (the Makefile's
// COMPOSE_VERSION).
func newComposeCommand(dockerCli command.Cli) *cobra.Command {
	backend := &composecmd.BackendOptions{Options: []compose.Option{
		compose.WithPrompt(prompt.NewPrompt(dockerCli.In(), dockerCli.Out()).Confirm),
	}}
	cmd := composecmd.RootCommand(dockerCli, backend)
	// As compose's main: a flag error is compose's message, exit status 1.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return dockercli.StatusError{StatusCode: 1, Status: err.Error()}
	})
	return cmd
}
