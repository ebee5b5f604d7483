package main

import (
	"errors"
	"fmt"
	"slices"

	"github.com/docker/cli/cli/command"
	"github.com/moby/moby/client/pkg/versions"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// What follows is docker's own gating of commands and flags by what the
// daemon supports (cmd/docker/docker.go: isSupported,
// hideUnsupportedFeatures), which lives in docker's main package and so
// cannot be imported. Commands and flags carry annotations ("version",
// "ostype", "experimental", "swarm"); a use the daemon cannot serve fails
// before any request, and help hides it. berthd reports swarm inactive and
// no experimental features, so the swarm and experimental commands stay
// out of sight, as they do against a dockerd without swarm.

// serverDetails is what the gates read from the daemon; the calls are made
// only when a gate needs them, so that local commands never ping.
type serverDetails interface {
	CurrentVersion() string
	ServerInfo() command.ServerInfo
}

func isSupported(cmd *cobra.Command, d serverDetails) error {
	for c := cmd; c != nil; c = c.Parent() {
		if v, ok := c.Annotations["version"]; ok && versions.LessThan(d.CurrentVersion(), v) {
			return fmt.Errorf("%s requires API version %s, but the daemon API version is %s", cmd.CommandPath(), v, d.CurrentVersion())
		}
		if os, ok := c.Annotations["ostype"]; ok && d.ServerInfo().OSType != "" && os != d.ServerInfo().OSType {
			return fmt.Errorf("%s is only supported on a daemon running on %s, but the daemon is running on %s", cmd.CommandPath(), os, d.ServerInfo().OSType)
		}
		if _, ok := c.Annotations["experimental"]; ok && !d.ServerInfo().HasExperimental {
			return fmt.Errorf("%s is only supported on a daemon with experimental features enabled", cmd.CommandPath())
		}
	}
	var errs []error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if !f.Changed || len(f.Annotations) == 0 {
			return
		}
		if v := flagAnnotation(f, "version"); v != "" && versions.LessThan(d.CurrentVersion(), v) {
			errs = append(errs, fmt.Errorf(`"--%s" requires API version %s, but the daemon API version is %s`, f.Name, v, d.CurrentVersion()))
			return
		}
		if os := flagAnnotation(f, "ostype"); os != "" && d.ServerInfo().OSType != "" && os != d.ServerInfo().OSType {
			errs = append(errs, fmt.Errorf(`"--%s" is only supported on a daemon running on %s, but the daemon is running on %s`, f.Name, os, d.ServerInfo().OSType))
			return
		}
		if _, ok := f.Annotations["experimental"]; ok && !d.ServerInfo().HasExperimental {
			errs = append(errs, fmt.Errorf(`"--%s" is only supported on a daemon with experimental features enabled`, f.Name))
		}
	})
	return errors.Join(errs...)
}

func flagAnnotation(f *pflag.Flag, name string) string {
	if v := f.Annotations[name]; len(v) == 1 {
		return v[0]
	}
	return ""
}

// setFlagErrorFunc reports an unsupported command before a flag error, as
// docker does (`berth stack --nonsense`).
func setFlagErrorFunc(d serverDetails, cmd *cobra.Command) {
	flagErrorFunc := cmd.FlagErrorFunc()
	cmd.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		if err := isSupported(cmd, d); err != nil {
			return err
		}
		return flagErrorFunc(cmd, err)
	})
}

// setValidateArgs checks support before the arguments, so that an
// unsupported command says so rather than complain of its arguments.
func setValidateArgs(d serverDetails) func(*cobra.Command) {
	return func(cmd *cobra.Command) {
		if cmd.Args == nil || !hasAnnotations(cmd) {
			return
		}
		args := cmd.Args
		cmd.Args = func(cmd *cobra.Command, a []string) error {
			if err := isSupported(cmd, d); err != nil {
				return err
			}
			return args(cmd, a)
		}
	}
}

func hasAnnotations(cmd *cobra.Command) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if len(c.Annotations) > 0 {
			return true
		}
	}
	return false
}

// setHelpFunc hides from help what the daemon does not support.
func setHelpFunc(d serverDetails, root *cobra.Command) {
	defaultHelp := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		if err := isSupported(cmd, d); err != nil {
			cmd.Println(err)
			return
		}
		hideUnsupported(cmd, d)
		defaultHelp(cmd, args)
	})
}

func hideUnsupported(cmd *cobra.Command, d serverDetails) {
	unsupported := map[string]func(string) bool{
		"experimental": func(string) bool { return !d.ServerInfo().HasExperimental },
		"ostype": func(v string) bool {
			return d.ServerInfo().OSType != "" && v != d.ServerInfo().OSType
		},
		"swarm": func(v string) bool {
			s := d.ServerInfo().SwarmStatus
			if s == nil {
				return false
			}
			switch v {
			case "manager":
				return !s.ControlAvailable
			case "active":
				return s.NodeState == "inactive"
			}
			return false
		},
		"version": func(v string) bool { return versions.LessThan(d.CurrentVersion(), v) },
	}
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if cmd.Parent() != nil {
			if cmds, ok := f.Annotations["top-level"]; ok {
				f.Hidden = !inCommands(cmd, cmds)
			}
		}
		for name, hide := range unsupported {
			if v, ok := f.Annotations[name]; ok && !f.Hidden && hide(first(v)) {
				f.Hidden = true
			}
		}
	})
	for _, sub := range cmd.Commands() {
		for name, hide := range unsupported {
			if v, ok := sub.Annotations[name]; ok && !sub.Hidden && hide(v) {
				sub.Hidden = true
			}
		}
	}
}

func first(v []string) string {
	if len(v) > 0 {
		return v[0]
	}
	return ""
}

// inCommands reports whether cmd or one of its ancestors is named in cmds.
func inCommands(cmd *cobra.Command, cmds []string) bool {
	for c := cmd; c != nil; c = c.Parent() {
		if slices.Contains(cmds, c.Name()) {
			return true
		}
	}
	return false
}
