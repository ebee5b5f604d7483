package main

import (
	"fmt"
	"os"

	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/command/image/build"
	"github.com/docker/cli/opts"
	"github.com/moby/moby/api/types/registry"
	"github.com/spf13/cobra"

	"github.com/berth-dev/berth/builder/client"
)

// newBuildCommand replaces docker's build (at "build", "image build" and
// "builder build"): docker's classic-builder flags that berthd serves, plus
// --secret (Berth's extension of POST /build) and --progress, with
// BuildKit-style progress on a terminal and plain lines when piped.
func newBuildCommand(dockerCli command.Cli, docker *cobra.Command) *cobra.Command {
	var (
		o                                   client.Options
		tags, buildArgs, labels, extraHosts opts.ListOpts
		shmSize                             opts.MemBytes
		iidFile, progress                   string
	)
	tags = opts.NewListOpts(nil)
	buildArgs = opts.NewListOpts(opts.ValidateEnv)
	labels = opts.NewListOpts(opts.ValidateLabel)
	extraHosts = opts.NewListOpts(opts.ValidateExtraHost)
	cmd := &cobra.Command{
		Use:   "build [OPTIONS] PATH | -",
		Short: "Build an image from a Dockerfile",
		Long: "Build an image from a Dockerfile with berthd's builder.\n\n" +
			"--secret id=ID,src=FILE (or env=VAR) makes a build secret available to\n" +
			"RUN --mount=type=secret,id=ID; it stays in berthd's memory and never\n" +
			"reaches the image, its history or the build cache.",
		Args:                  cli.ExactArgs(1),
		DisableFlagsInUseLine: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch t, err := build.DetectContextType(args[0]); {
			case err != nil:
				return err
			case t == build.ContextTypeRemote || t == build.ContextTypeGit:
				return fmt.Errorf("berth build: remote build contexts (%s) are not supported: clone or download it and build the directory", args[0])
			}
			o.ContextDir = args[0]
			o.Stdin = dockerCli.In()
			o.Tags, o.BuildArgs, o.Labels, o.ExtraHosts = tags.GetSlice(), buildArgs.GetSlice(), labels.GetSlice(), extraHosts.GetSlice()
			o.ShmSize = shmSize.Value()
			mode := progress
			switch {
			case o.Quiet:
				mode = client.ModeQuiet
			case mode == "auto" || mode == "":
				mode = client.ModePlain
				if dockerCli.Err().IsTerminal() {
					mode = client.ModeTTY
				}
			case mode != client.ModePlain && mode != client.ModeTTY:
				return fmt.Errorf("--progress %q: want auto, plain or tty", mode)
			}
			creds, _ := dockerCli.ConfigFile().GetAllCredentials()
			o.Auth = map[string]registry.AuthConfig{}
			for k, c := range creds {
				o.Auth[k] = registry.AuthConfig{Username: c.Username, Password: c.Password, ServerAddress: c.ServerAddress,
					Auth: c.Auth, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}
			}
			if iidFile != "" {
				if err := os.Remove(iidFile); err != nil && !os.IsNotExist(err) {
					return fmt.Errorf("removing image ID file: %w", err)
				}
			}
			// Progress goes to stderr, as BuildKit's does, so that
			// stdout carries only what -q asks for.
			p := client.NewProgress(dockerCli.Err(), mode)
			if _, w := dockerCli.Err().GetTtySize(); w > 0 {
				p.Width = int(w)
			}
			id, err := client.Build(cmd.Context(), dockerCli.Client().Dialer(), o, p)
			if err != nil {
				return err
			}
			if o.Quiet {
				fmt.Fprintln(dockerCli.Out(), id)
			}
			if iidFile != "" {
				if err := os.WriteFile(iidFile, []byte(id), 0o666); err != nil {
					return err
				}
			}
			return nil
		},
	}
	if docker != nil {
		cmd.Aliases = docker.Aliases
		cmd.Annotations = docker.Annotations
	}
	f := cmd.Flags()
	f.VarP(&tags, "tag", "t", `Name and optionally a tag in the "name:tag" format`)
	f.StringVarP(&o.Dockerfile, "file", "f", "", `Name of the Dockerfile (default: "PATH/Dockerfile")`)
	f.Var(&buildArgs, "build-arg", "Set build-time variables")
	f.StringVar(&o.Target, "target", "", "Set the target build stage to build")
	f.BoolVar(&o.NoCache, "no-cache", false, "Do not use cache when building the image")
	f.BoolVar(&o.Pull, "pull", false, "Always attempt to pull a newer version of the image")
	f.BoolVarP(&o.Quiet, "quiet", "q", false, "Suppress the build output and print image ID on success")
	f.StringVar(&iidFile, "iidfile", "", "Write the image ID to the file")
	f.Var(&labels, "label", "Set metadata for an image")
	f.StringArrayVar(&o.Secrets, "secret", nil, `Secret to expose to the build (format: "id=mysecret[,src=/local/secret]" or "id=mysecret,env=VAR")`)
	f.StringVar(&o.Network, "network", "default", "Set the networking mode for the RUN instructions during build (default, host, none)")
	f.StringVar(&progress, "progress", "auto", "Set type of progress output (auto, plain, tty)")
	f.StringVar(&o.Platform, "platform", os.Getenv("DOCKER_DEFAULT_PLATFORM"), "Set platform if server is multi-platform capable")
	f.Var(&extraHosts, "add-host", `Add a custom host-to-IP mapping ("host:ip")`)
	f.Var(&shmSize, "shm-size", "Size of /dev/shm")
	return cmd
}
