package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/docker/cli/cli/config/types"
	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

type loginOptions struct {
	username, password string
	passwordStdin      bool
}

func (c *cli) loginCommand() *cobra.Command {
	var o loginOptions
	cmd := &cobra.Command{
		Use:   "login [OPTIONS] [SERVER]",
		Short: "Authenticate to a registry",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			server := ""
			if len(args) == 1 {
				server = args[0]
			}
			return c.login(cmd, o, server)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.username, "username", "u", "", "username")
	f.StringVarP(&o.password, "password", "p", "", "password or personal access token")
	f.BoolVar(&o.passwordStdin, "password-stdin", false, "take the password from stdin")
	return cmd
}

// login checks the credentials through the daemon (POST /auth) and only then
// stores them in the docker config file, base64 in "auths" as docker does.
func (c *cli) login(cmd *cobra.Command, o loginOptions, server string) error {
	key := serverKey(server)
	in := bufio.NewReader(c.in)
	if o.password != "" {
		fmt.Fprintln(c.err, "WARNING! Using --password via the CLI is insecure. Use --password-stdin.")
		if o.passwordStdin {
			return errors.New("--password and --password-stdin are mutually exclusive")
		}
	}
	if o.passwordStdin {
		if o.username == "" {
			return errors.New("must provide --username with --password-stdin")
		}
		b, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("read password from stdin: %w", err)
		}
		o.password = strings.TrimRight(string(b), "\r\n")
	}
	if o.username == "" {
		fmt.Fprint(c.out, "Username: ")
		line, err := in.ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read username: %w", err)
		}
		o.username = strings.TrimSpace(line)
	}
	if o.password == "" {
		fmt.Fprint(c.out, "Password: ")
		if f, ok := c.in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			b, err := term.ReadPassword(int(f.Fd()))
			fmt.Fprintln(c.out)
			if err != nil {
				return fmt.Errorf("read password: %w", err)
			}
			o.password = string(b)
		} else {
			line, err := in.ReadString('\n')
			if err != nil && line == "" {
				return fmt.Errorf("read password: %w", err)
			}
			o.password = strings.TrimRight(line, "\r\n")
		}
	}
	if o.username == "" || o.password == "" {
		return errors.New("username and password are required")
	}

	api, err := c.client()
	if err != nil {
		return err
	}
	res, err := api.RegistryLogin(cmd.Context(), client.RegistryLoginOptions{
		Username: o.username, Password: o.password, ServerAddress: key,
	})
	if err != nil {
		return err
	}
	cf, err := c.configFile()
	if err != nil {
		return err
	}
	ac := types.AuthConfig{Username: o.username, Password: o.password, ServerAddress: key}
	if res.Auth.IdentityToken != "" {
		// A token replaces the password, as docker stores it.
		ac.Password, ac.IdentityToken = "", res.Auth.IdentityToken
	}
	if err := cf.GetCredentialsStore(key).Store(ac); err != nil {
		return fmt.Errorf("store credentials for %s in %s: %w", key, cf.Filename, err)
	}
	status := res.Auth.Status
	if status == "" {
		status = "Login Succeeded"
	}
	fmt.Fprintln(c.out, status)
	return nil
}
