package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	composecmd "github.com/docker/compose/v5/cmd/compose"
	"github.com/docker/compose/v5/pkg/api"
	"github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/api/types/registry"
	"github.com/spf13/cobra"

	buildclient "github.com/berth-dev/berth/builder/client"
)

// Compose's build secrets (`build.secrets`) on Berth.
//
// Compose v5 builds with bake when buildx is there and otherwise with the
// classic POST /build, which cannot carry secrets: it refuses such a
// service ("the classic builder doesn't support secrets"). berth has no
// buildx and berthd no BuildKit, but Berth's builder takes secrets through
// its extension of POST /build (builder/client, `berth build --secret`).
// So the compose commands that build (build, up, create, run) first build
// the services with build secrets themselves, as compose's classic path
// would (context, Dockerfile, args, labels, target, tags, network, extra
// hosts, shm size, no-cache, pull) plus the secrets, and tag the image
// with the name compose looks for; compose then finds it present and
// builds only the others. Compose's own backend has no hook for this (its
// options reach an unexported service), hence the commands' RunE.

// composeBuildWithSecrets extends `compose build`: the selected services
// with build secrets are built by Berth's builder, the rest by compose.
func composeBuildWithSecrets(dockerCli command.Cli, compose *cobra.Command) *cobra.Command {
	run := compose.RunE
	compose.RunE = func(cmd *cobra.Command, args []string) error {
		f := cmd.Flags()
		if print, _ := f.GetBool("print"); print {
			return run(cmd, args)
		}
		if check, _ := f.GetBool("check"); check {
			return run(cmd, args)
		}
		p, err := loadComposeProject(cmd.Context(), dockerCli, cmd)
		if err != nil {
			return run(cmd, args) // compose reports it in its words
		}
		deps, _ := f.GetBool("with-dependencies")
		selected, err := selectServices(p, args, deps)
		if err != nil {
			return run(cmd, args)
		}
		secret, rest := splitSecretBuilds(p, selected)
		if len(secret) == 0 {
			return run(cmd, args)
		}
		o := composeBuildOptions{}
		o.noCache, _ = f.GetBool("no-cache")
		o.pull, _ = f.GetBool("pull")
		o.args, _ = f.GetStringArray("build-arg")
		if q, _ := f.GetBool("quiet"); q {
			o.progress = buildclient.ModeQuiet
		}
		if err := buildWithSecrets(cmd.Context(), dockerCli, cmd, p, secret, o); err != nil {
			return err
		}
		if push, _ := f.GetBool("push"); push {
			if err := runComposeSibling(cmd, "push", secret); err != nil {
				return err
			}
		}
		if len(rest) == 0 {
			return nil
		}
		// The dependencies are in rest already.
		if deps {
			_ = f.Set("with-dependencies", "false")
		}
		return run(cmd, rest)
	}
	return compose
}

// composeUpWithSecrets extends `compose up`, `create` and `run`: before
// compose creates anything, the services with build secrets whose image it
// would build (missing, or --build) are built by Berth's builder. With
// --build the other buildable services are built by `compose build` first,
// and compose then goes on without --build.
func composeUpWithSecrets(dockerCli command.Cli, compose *cobra.Command) *cobra.Command {
	run := compose.RunE
	compose.RunE = func(cmd *cobra.Command, args []string) error {
		f := cmd.Flags()
		if noBuild, _ := f.GetBool("no-build"); noBuild {
			return run(cmd, args)
		}
		p, err := loadComposeProject(cmd.Context(), dockerCli, cmd)
		if err != nil {
			return run(cmd, args)
		}
		names := args
		if cmd.Name() == "run" {
			names = args[:min(1, len(args))]
		}
		noDeps, _ := f.GetBool("no-deps")
		selected, err := selectServices(p, names, !noDeps)
		if err != nil {
			return run(cmd, args)
		}
		secret, rest := splitSecretBuilds(p, selected)
		if len(secret) == 0 {
			return run(cmd, args)
		}
		force, _ := f.GetBool("build")
		var build []string
		for _, name := range secret {
			s := p.Services[name]
			if s.PullPolicy == types.PullPolicyBuild {
				return fmt.Errorf("service %q has build secrets and pull_policy %q: compose would build it on every run with its classic builder, which cannot carry secrets; berth compose builds it when its image is missing or with --build", name, s.PullPolicy)
			}
			missing, err := imageMissing(cmd.Context(), dockerCli, api.GetImageNameOrDefault(s, p.Name))
			if err != nil {
				return err
			}
			if force || missing {
				build = append(build, name)
			}
		}
		if err := buildWithSecrets(cmd.Context(), dockerCli, cmd, p, build, composeBuildOptions{}); err != nil {
			return err
		}
		if force {
			if len(rest) > 0 {
				if err := runComposeSibling(cmd, "build", rest); err != nil {
					return err
				}
			}
			_ = f.Set("build", "false")
		}
		return run(cmd, args)
	}
	return compose
}

// loadComposeProject loads the project as the compose command cmd will:
// from compose's flags (-f, -p, --project-directory,
// --profile, --env-file), the environment and the .env file.
func loadComposeProject(ctx context.Context, dockerCli command.Cli, cmd *cobra.Command) (*types.Project, error) {
	f := composeRoot(cmd).Flags()
	var o composecmd.ProjectOptions
	o.ProjectName, _ = f.GetString("project-name")
	o.ConfigPaths, _ = f.GetStringArray("file")
	o.Profiles, _ = f.GetStringArray("profile")
	o.EnvFiles, _ = f.GetStringArray("env-file")
	o.ProjectDir, _ = f.GetString("project-directory")
	if o.ProjectDir == "" {
		o.ProjectDir, _ = f.GetString("workdir")
	}
	o.Compatibility, _ = f.GetBool("compatibility")
	for i, file := range o.EnvFiles {
		if abs, err := filepath.Abs(file); err == nil {
			o.EnvFiles[i] = abs
		}
	}
	backend, err := compose.NewComposeService(dockerCli)
	if err != nil {
		return nil, err
	}
	// 1: compose prints the loader's warnings when it loads the project
	// itself (skipUnsupportedAttributesWarning).
	p, _, err := o.ToProject(ctx, dockerCli, backend, nil, 1, cli.WithoutEnvironmentResolution)
	if err != nil {
		return nil, err
	}
	return p.WithServicesEnvironmentResolved(true)
}

// composeRoot is the compose command above cmd, whose own flags (not
// persistent ones) are the project's.
func composeRoot(cmd *cobra.Command) *cobra.Command {
	for c := cmd; c != nil; c = c.Parent() {
		if c.Name() == "compose" {
			return c
		}
	}
	return cmd
}

// selectServices names the services a command on names works on: all
// when none are named, with their dependencies when deps.
func selectServices(p *types.Project, names []string, deps bool) ([]string, error) {
	if len(names) == 0 {
		return p.ServiceNames(), nil
	}
	policy := types.IgnoreDependencies
	if deps {
		policy = types.IncludeDependencies
	}
	sel, err := p.WithSelectedServices(names, policy)
	if err != nil {
		return nil, err
	}
	return sel.ServiceNames(), nil
}

// splitSecretBuilds splits the buildable services among names into those
// with build secrets and the others, each sorted.
func splitSecretBuilds(p *types.Project, names []string) (secret, rest []string) {
	for _, name := range names {
		s, ok := p.Services[name]
		if !ok || s.Build == nil {
			continue
		}
		if len(s.Build.Secrets) > 0 {
			secret = append(secret, name)
		} else {
			rest = append(rest, name)
		}
	}
	sort.Strings(secret)
	sort.Strings(rest)
	return secret, rest
}

func imageMissing(ctx context.Context, dockerCli command.Cli, ref string) (bool, error) {
	_, err := dockerCli.Client().ImageInspect(ctx, ref)
	switch {
	case err == nil:
		return false, nil
	case errdefs.IsNotFound(err):
		return true, nil
	default:
		return false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
}

// composeBuildOptions are `compose build`'s flags that apply to every
// service.
type composeBuildOptions struct {
	noCache, pull bool
	// args are --build-arg KEY=VALUE (or KEY, from the environment).
	args     []string
	progress string
}

// buildWithSecrets builds the named services by Berth's builder, one after
// the other in the project's dependency order.
func buildWithSecrets(ctx context.Context, dockerCli command.Cli, cmd *cobra.Command, p *types.Project, names []string, o composeBuildOptions) error {
	if len(names) == 0 {
		return nil
	}
	if o.progress == "" {
		o.progress = buildclient.ModePlain
		mode, _ := composeRoot(cmd).Flags().GetString("progress")
		switch {
		case mode == "quiet":
			o.progress = buildclient.ModeQuiet
		case mode == "tty" || (mode == "" || mode == "auto") && dockerCli.Err().IsTerminal():
			o.progress = buildclient.ModeTTY
		}
	}
	// Dependencies first, as compose's classic builds go.
	var order []string
	err := p.ForEachService(names, func(name string, _ *types.ServiceConfig) error {
		if slices.Contains(names, name) {
			order = append(order, name)
		}
		return nil
	}, types.IncludeDependencies)
	if err != nil {
		return err
	}
	proxy := dockerCli.ConfigFile().ParseProxyConfig(dockerCli.Client().DaemonHost(), nil)
	creds, _ := dockerCli.ConfigFile().GetAllCredentials()
	auth := map[string]registry.AuthConfig{}
	for k, c := range creds {
		auth[k] = registry.AuthConfig{Username: c.Username, Password: c.Password, ServerAddress: c.ServerAddress,
			Auth: c.Auth, IdentityToken: c.IdentityToken, RegistryToken: c.RegistryToken}
	}
	for _, name := range order {
		s := p.Services[name]
		bo, cleanup, err := serviceBuildOptions(p, s, o, proxy)
		if err != nil {
			return fmt.Errorf("service %q: %w", name, err)
		}
		bo.Auth = auth
		image := api.GetImageNameOrDefault(s, p.Name)
		fmt.Fprintf(dockerCli.Err(), "Building %s with Berth's builder (build secrets: %s)\n", image, secretIDs(s))
		_, err = buildclient.Build(ctx, dockerCli.Client().Dialer(), bo, buildclient.NewProgress(dockerCli.Err(), o.progress))
		cleanup()
		if err != nil {
			return fmt.Errorf("service %q: build %s: %w", name, image, err)
		}
	}
	return nil
}

// serviceBuildOptions is compose's classic build of s (imageBuildOptions
// in compose's build_classic.go) as Berth's builder client takes it, with
// the secrets as `--secret` specs; proxy are the docker config's proxy
// build args. cleanup removes a temporary Dockerfile written for
// dockerfile_inline.
func serviceBuildOptions(p *types.Project, s types.ServiceConfig, o composeBuildOptions, proxy map[string]*string) (buildclient.Options, func(), error) {
	b := s.Build
	cleanup := func() {}
	switch {
	case len(b.SSH) > 0:
		return buildclient.Options{}, cleanup, errors.New("berth's builder does not support build.ssh")
	case len(b.AdditionalContexts) > 0:
		return buildclient.Options{}, cleanup, errors.New("berth's builder does not support build.additional_contexts")
	case len(b.Platforms) > 1:
		return buildclient.Options{}, cleanup, errors.New("berth's builder builds one platform at a time (build.platforms)")
	case b.Privileged:
		return buildclient.Options{}, cleanup, errors.New("berth's builder does not support build.privileged")
	}
	dockerfile := b.Dockerfile
	if b.DockerfileInline != "" {
		tmp, err := os.CreateTemp("", "berth-compose-dockerfile-")
		if err != nil {
			return buildclient.Options{}, cleanup, err
		}
		cleanup = func() { os.Remove(tmp.Name()) }
		if _, err := tmp.WriteString(b.DockerfileInline); err != nil {
			tmp.Close()
			return buildclient.Options{}, cleanup, err
		}
		tmp.Close()
		dockerfile = tmp.Name()
	} else if dockerfile != "" && !filepath.IsAbs(dockerfile) {
		dockerfile = filepath.Join(b.Context, dockerfile)
	}
	out := buildclient.Options{
		ContextDir: b.Context,
		Dockerfile: dockerfile,
		Tags:       append(slices.Clone(b.Tags), api.GetImageNameOrDefault(s, p.Name)),
		Target:     b.Target,
		NoCache:    b.NoCache || o.noCache,
		Pull:       b.Pull || o.pull,
		Network:    b.Network,
		ExtraHosts: b.ExtraHosts.AsList(":"),
		ShmSize:    int64(b.ShmSize),
		Platform:   s.Platform,
		Getenv: func(k string) string {
			return p.Environment[k]
		},
	}
	// Build args: the docker config's proxies, the service's args, then
	// --build-arg; a KEY without a value comes from the project's
	// environment and is dropped when it has none, as compose does.
	args := map[string]string{}
	for k, v := range proxy {
		if v != nil {
			args[k] = *v
		}
	}
	for k, v := range b.Args {
		if v != nil {
			args[k] = *v
		} else if ev, ok := p.Environment[k]; ok {
			args[k] = ev
		}
	}
	for _, a := range o.args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			ev, set := p.Environment[k]
			if !set {
				continue
			}
			v = ev
		}
		args[k] = v
	}
	for _, k := range slices.Sorted(mapKeys(args)) {
		out.BuildArgs = append(out.BuildArgs, k+"="+args[k])
	}
	for _, k := range slices.Sorted(mapKeys(b.Labels)) {
		out.Labels = append(out.Labels, k+"="+b.Labels[k])
	}
	out.Labels = append(out.Labels, api.ImageBuilderLabel+"=berth")
	for _, ref := range b.Secrets {
		def, ok := p.Secrets[ref.Source]
		if !ok {
			return out, cleanup, fmt.Errorf("build secret %q is not defined in the project's secrets", ref.Source)
		}
		id := ref.Target
		if id == "" {
			id = ref.Source
		}
		switch {
		case bool(def.External):
			return out, cleanup, fmt.Errorf("build secret %q is external, which only Swarm provides", ref.Source)
		case def.Environment != "":
			out.Secrets = append(out.Secrets, "id="+id+",env="+def.Environment)
		case def.File != "":
			out.Secrets = append(out.Secrets, "id="+id+",src="+def.File)
		default:
			return out, cleanup, fmt.Errorf("build secret %q has neither file nor environment", ref.Source)
		}
	}
	return out, cleanup, nil
}

func secretIDs(s types.ServiceConfig) string {
	var ids []string
	for _, ref := range s.Build.Secrets {
		id := ref.Target
		if id == "" {
			id = ref.Source
		}
		ids = append(ids, id)
	}
	return fmt.Sprint(ids)
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// runComposeSibling runs the compose subcommand name (a sibling of cmd)
// on services, with its default flags and the project flags cmd parsed.
func runComposeSibling(cmd *cobra.Command, name string, services []string) error {
	sib := findChild(cmd.Parent(), []string{name})
	if sib == nil || sib.RunE == nil {
		return fmt.Errorf("compose has no %s command", name)
	}
	sib.SetContext(cmd.Context())
	if err := sib.ParseFlags(nil); err != nil {
		return err
	}
	return sib.RunE(sib, services)
}
