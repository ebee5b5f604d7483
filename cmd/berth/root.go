package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/moby/moby/client"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// defaultHost is berthd's Docker API socket.
const defaultHost = "unix:///run/berth/docker.sock"

// version is the CLI's version; make sets it with -ldflags -X.
var version = "dev"

// streams are the CLI's standard streams; tests give buffers.
type streams struct {
	in  io.Reader
	out io.Writer
	err io.Writer
}

// cli is the state one invocation shares between verbs.
type cli struct {
	streams
	getenv func(string) string
	host   string
	api    *client.Client
}

// exitError carries a status for run; its message is already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// run executes one command line and returns the process exit status.
func run(args []string, s streams, getenv func(string) string) int {
	c := &cli{streams: s, getenv: getenv}
	root := c.rootCommand()
	root.SetArgs(args)
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	err := root.ExecuteContext(context.Background())
	if c.api != nil {
		c.api.Close()
	}
	if err == nil {
		return 0
	}
	var ee exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	fmt.Fprintln(s.err, errorLine(err))
	return 1
}

// errorLine is the one line printed for err: the daemon's errors already say
// "Error response from daemon: ..."; everything else is prefixed "berth: ".
func errorLine(err error) string {
	msg := strings.TrimSpace(err.Error())
	if strings.HasPrefix(msg, "Error response from daemon:") {
		return msg
	}
	return "berth: " + msg
}

func (c *cli) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "berth [OPTIONS] COMMAND",
		Short:         "A docker-like client for the Berth container engine",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&c.host, "host", "H", "", "daemon socket to connect to (default $BERTH_HOST or "+defaultHost+")")

	image := &cobra.Command{Use: "image", Short: "Manage images"}
	image.AddCommand(
		c.imagesCommand("ls"), c.pullCommand(), c.pushCommand(), c.rmiCommand("rm"),
		c.tagCommand(), c.inspectCommand(), c.saveCommand(), c.loadCommand(),
	)
	root.AddCommand(
		image,
		c.imagesCommand("images"), c.pullCommand(), c.pushCommand(), c.rmiCommand("rmi"),
		c.tagCommand(), c.inspectCommand(), c.saveCommand(), c.loadCommand(),
		c.loginCommand(), c.logoutCommand(), c.versionCommand(), c.infoCommand(),
	)
	return root
}

// client connects lazily so that --help and local verbs work without a daemon.
func (c *cli) client() (*client.Client, error) {
	if c.api != nil {
		return c.api, nil
	}
	host := c.host
	if host == "" {
		host = c.getenv("BERTH_HOST")
	}
	if host == "" {
		host = defaultHost
	}
	api, err := client.New(client.WithHost(host), client.WithAPIVersionNegotiation(), client.WithUserAgent("berth/"+version))
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", host, err)
	}
	c.api = api
	return api, nil
}

// terminal reports whether w is a terminal and its descriptor.
func terminal(w any) (uintptr, bool) {
	f, ok := w.(*os.File)
	if !ok {
		return 0, false
	}
	return f.Fd(), term.IsTerminal(int(f.Fd()))
}
