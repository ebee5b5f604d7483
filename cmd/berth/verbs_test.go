package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/docker/cli/cli/command"
	"github.com/spf13/cobra"
)

func TestInstallVerbs(t *testing.T) {
	var ran []string
	leaf := func(name string) *cobra.Command {
		return &cobra.Command{Use: name, RunE: func(*cobra.Command, []string) error { ran = append(ran, "docker "+name); return nil }}
	}
	newTree := func() *cobra.Command {
		root := &cobra.Command{Use: "berth"}
		image := &cobra.Command{Use: "image"}
		image.AddCommand(leaf("build"), leaf("ls"))
		root.AddCommand(leaf("build"), leaf("pull"), image)
		return root
	}
	execute := func(root *cobra.Command, args ...string) {
		t.Helper()
		root.SetArgs(args)
		root.SetOut(&bytes.Buffer{})
		if err := root.Execute(); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}

	root := newTree()
	var got []*cobra.Command
	installVerbs(root, nil, []verb{
		// Replace: a new command at both paths of a verb.
		{paths: []string{"build", "image build"}, make: func(_ command.Cli, docker *cobra.Command) *cobra.Command {
			got = append(got, docker)
			return &cobra.Command{Use: "build", RunE: func(*cobra.Command, []string) error { ran = append(ran, "berth build"); return nil }}
		}},
		// Extend: docker's command with a flag, its RunE wrapped.
		{paths: []string{"pull"}, make: func(_ command.Cli, docker *cobra.Command) *cobra.Command {
			secret := docker.Flags().String("secret", "", "")
			dockerRun := docker.RunE
			docker.RunE = func(cmd *cobra.Command, args []string) error {
				ran = append(ran, "berth pull --secret "+*secret)
				return dockerRun(cmd, args)
			}
			return docker
		}},
		// New: where docker has nothing.
		{paths: []string{"image sign"}, make: func(_ command.Cli, docker *cobra.Command) *cobra.Command {
			if docker != nil {
				t.Errorf("image sign: docker's command %v", docker)
			}
			return &cobra.Command{Use: "sign", RunE: func(*cobra.Command, []string) error { ran = append(ran, "berth sign"); return nil }}
		}},
	})
	if len(got) != 2 || got[0] == nil || got[0].Parent() != nil || got[1] == nil || got[1].Name() != "build" {
		t.Errorf("make was given %v; want docker's two build commands, detached", got)
	}
	execute(root, "build")
	execute(root, "image", "build")
	execute(root, "image", "ls")
	execute(root, "pull", "--secret", "id=x")
	execute(root, "image", "sign")
	want := "berth build|berth build|docker ls|berth pull --secret id=x|docker pull|berth sign"
	if strings.Join(ran, "|") != want {
		t.Errorf("ran %q, want %q", strings.Join(ran, "|"), want)
	}
	var names []string
	for _, c := range root.Commands() {
		names = append(names, c.Name())
	}
	if got := strings.Join(names, " "); got != "build completion help image pull" {
		t.Errorf("root's commands after replacing: %s", got)
	}

	defer func() {
		if recover() == nil {
			t.Error("a verb under a missing command did not panic")
		}
	}()
	installVerbs(newTree(), nil, []verb{{paths: []string{"nosuch build"}, make: func(command.Cli, *cobra.Command) *cobra.Command { return leaf("build") }}})
}

// TestVerbPaths: the paths verbs.go's documentation names exist in berth's
// tree, and the Berth verbs are in their places.
func TestVerbPaths(t *testing.T) {
	dockerCli, err := command.NewDockerCli()
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCommand(dockerCli)
	cmd, _, err := root.HandleGlobalFlags()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"build", "image build", "builder build", "compose build", "compose up", "context use", "bake"} {
		if findChild(cmd, strings.Fields(path)) == nil {
			t.Errorf("no command %q", path)
		}
	}
	if c := findChild(cmd, []string{"context", "use"}); c == nil || !strings.Contains(c.Short, "not supported by berth") {
		t.Errorf("context use is not Berth's: %v", c)
	}
	if c := findChild(cmd, []string{"bake"}); c == nil || !c.Hidden {
		t.Errorf("bake is not hidden: %v", c)
	}
}
