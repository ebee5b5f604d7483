package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

// A verb is a Berth command that takes the place of docker's at each of
// its paths, or a new command where docker has none.
//
// Every docker verb comes from docker/cli unchanged; this table is the one
// place where Berth replaces or extends one. To change a verb, add an entry:
// make receives docker's command at the path (nil where docker has none)
// and returns the command to install there. Return a new command to
// replace docker's; to extend it, change docker's command and return it
// (add a flag, wrap its RunE, and call the original for what docker does).
// A verb that docker registers under several paths ("build", "image build",
// "builder build") lists them all, so that every spelling runs Berth's.
// Berth's build (`build --secret` through Berth's extension of POST /build)
// is one such entry, with newBuildCommand in build.go. Compose's subcommands are in the tree
// by then and are extended the same way: compose builds through its
// classic builder path, not through `berth build`, except the services
// with build secrets, which "compose build", "up", "create" and "run"
// build through Berth's builder first (compose_build.go).
type verb struct {
	paths []string
	make  func(dockerCli command.Cli, docker *cobra.Command) *cobra.Command
}

var berthVerbs = []verb{
	{paths: []string{"context use"}, make: newContextUseCommand},
	{paths: []string{"bake"}, make: withoutBake},
	{paths: []string{"build", "image build", "builder build"}, make: newBuildCommand},
	// Compose's build secrets through Berth's builder (compose_build.go).
	{paths: []string{"compose build"}, make: composeBuildWithSecrets},
	{paths: []string{"compose up", "compose create", "compose run"}, make: composeUpWithSecrets},
}

// withoutBake hides docker's `bake`, an alias of `buildx bake` that berth
// cannot run (no CLI plugins, and no BuildKit behind berthd), and makes it
// fail as docker's does without buildx.
func withoutBake(_ command.Cli, docker *cobra.Command) *cobra.Command {
	docker.Hidden = true
	docker.RunE = func(*cobra.Command, []string) error {
		return errors.New("berth bake needs buildx and BuildKit, which berth does not have: build with berth build or berth compose build")
	}
	return docker
}

// installVerbs puts each verb in place under root. A path whose parent
// command does not exist is a programming error: it panics, and the
// package's tests catch it.
func installVerbs(root *cobra.Command, dockerCli command.Cli, verbs []verb) {
	for _, v := range verbs {
		for _, path := range v.paths {
			words := strings.Fields(path)
			parent := root
			if len(words) > 1 {
				parent = findChild(root, words[:len(words)-1])
				if parent == nil {
					panic(fmt.Sprintf("berth verb %q: no command %q", path, strings.Join(words[:len(words)-1], " ")))
				}
			}
			docker := findChild(parent, words[len(words)-1:])
			if docker != nil {
				parent.RemoveCommand(docker)
			}
			parent.AddCommand(v.make(dockerCli, docker))
		}
	}
}

// findChild walks down from cmd by command names (not aliases, not flags).
func findChild(cmd *cobra.Command, names []string) *cobra.Command {
	for _, name := range names {
		var next *cobra.Command
		for _, c := range cmd.Commands() {
			if c.Name() == name {
				next = c
				break
			}
		}
		if next == nil {
			return nil
		}
		cmd = next
	}
	return cmd
}
