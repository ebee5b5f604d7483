package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/command/commands"
	cliflags "github.com/docker/cli/cli/flags"
	"github.com/docker/cli/cli/version"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Set by make with -ldflags -X (see the Makefile's BERTH_LDFLAGS).
var (
	berthVersion = "dev"
	gitCommit    = "unknown"
	buildTime    = "unknown"
)

// The client half of `berth version` and `berth info` is docker's, with
// Berth's name and version in it.
func init() {
	version.PlatformName = "Berth"
	version.Version = berthVersion
	version.GitCommit = gitCommit
	version.BuildTime = buildTime
}

func userAgent() string { return "Berth-Client/" + berthVersion + " (linux)" }

// rootCommand is berth's command tree, with the global options it parsed.
type rootCommand struct {
	*cli.TopLevelCommand
	opts  *cliflags.ClientOptions
	flags *pflag.FlagSet
}

// newRootCommand is docker's root command (cmd/docker's newDockerCommand)
// under Berth's name: docker's global flags and every docker verb, then
// compose, then Berth's own verbs in their places (verbs.go).
func newRootCommand(dockerCli *command.DockerCli) *rootCommand {
	cmd := &cobra.Command{
		Use:              "berth [OPTIONS] COMMAND [ARG...]",
		Short:            "Run containers on Berth: docker's commands, berthd's engine",
		SilenceUsage:     true,
		SilenceErrors:    true,
		TraverseChildren: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return command.ShowHelp(dockerCli.Err())(cmd, args)
			}
			return fmt.Errorf("berth: unknown command: berth %s\n\nRun 'berth --help' for more information", args[0])
		},
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			return isSupported(cmd, dockerCli)
		},
		Version:               fmt.Sprintf("%s, build %s", version.Version, version.GitCommit),
		DisableFlagsInUseLine: true,
		CompletionOptions: cobra.CompletionOptions{
			HiddenDefaultCmd:    true,
			DisableDescriptions: os.Getenv("DOCKER_CLI_DISABLE_COMPLETION_DESCRIPTION") != "",
		},
	}
	cmd.CompletionOptions.SetDefaultShellCompDirective(cobra.ShellCompDirectiveNoFileComp)
	cmd.SetIn(dockerCli.In())
	cmd.SetOut(dockerCli.Out())
	cmd.SetErr(dockerCli.Err())

	opts, _ := cli.SetupRootCommand(cmd)
	cmd.SetVersionTemplate("Berth version {{.Version}}\n")
	cmd.Flags().BoolP("version", "v", false, "Print version information and quit")
	describeEndpointFlags(cmd.Flags())
	setFlagErrorFunc(dockerCli, cmd)
	setHelpFunc(dockerCli, cmd)

	c := berthCli{dockerCli}
	commands.AddCommands(cmd, c)
	cmd.AddCommand(newComposeCommand(c))
	installVerbs(cmd, c, berthVerbs)

	visitAll(cmd, setValidateArgs(dockerCli), renameAliases)
	return &rootCommand{
		TopLevelCommand: cli.NewTopLevelCommand(cmd, dockerCli, opts, cmd.Flags()),
		opts:            opts,
		flags:           cmd.Flags(),
	}
}

// initialize completes the global options once they are parsed (Berth's
// endpoint, see endpoint.go) and initializes the CLI with them.
func initialize(r *rootCommand) error {
	useBerthEndpoint(r.opts, r.flags, os.Getenv)
	unsetDockerSelectors()
	return r.Initialize()
}

// describeEndpointFlags says in --help where berth connects by default.
func describeEndpointFlags(flags *pflag.FlagSet) {
	flags.Lookup("host").Usage = "Daemon socket to connect to (default $" + envHost + " or " + defaultHost + ")"
	flags.Lookup("context").Usage = `Name of the docker context to connect to (berth ignores DOCKER_HOST, DOCKER_CONTEXT and "docker context use")`
}

// renameAliases shows berth, not docker, in the help's "Aliases:" lines.
func renameAliases(cmd *cobra.Command) {
	if a, ok := cmd.Annotations["aliases"]; ok {
		cmd.Annotations["aliases"] = strings.ReplaceAll(", "+a, ", docker ", ", berth ")[len(", "):]
	}
}

// visitAll runs fns on every command of the tree, children first.
func visitAll(root *cobra.Command, fns ...func(*cobra.Command)) {
	for _, cmd := range root.Commands() {
		visitAll(cmd, fns...)
	}
	for _, fn := range fns {
		fn(root)
	}
}
