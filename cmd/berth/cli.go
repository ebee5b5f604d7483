package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/docker/cli/cli"
	"github.com/docker/cli/cli/command"
	"github.com/sirupsen/logrus"
)

// run executes one berth command line and returns the process's exit
// status. It is docker's own main (cmd/docker/docker.go, which Go cannot
// import) without what Berth leaves out: CLI plugins, command aliases,
// hooks and telemetry export.
func run(ctx context.Context, args []string) int {
	dockerCli, err := command.NewDockerCli(command.WithUserAgent(userAgent()))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	logrus.SetOutput(dockerCli.Err())
	ctx, stop := withTerminationSignals(ctx, dockerCli)
	defer stop()

	err = execute(ctx, dockerCli, args)
	if err != nil && !errdefs.IsCanceled(err) && err.Error() != "" {
		fmt.Fprintln(dockerCli.Err(), err)
	}
	return exitCode(err, context.Cause(ctx))
}

func execute(ctx context.Context, dockerCli *command.DockerCli, args []string) error {
	if err := command.WithBaseContext(ctx)(dockerCli); err != nil {
		return err
	}
	tcmd := newRootCommand(dockerCli)
	tcmd.SetArgs(args)
	cmd, args, err := tcmd.HandleGlobalFlags()
	if err != nil {
		return err
	}
	if err := initialize(tcmd); err != nil {
		return err
	}
	cmd.SetArgs(args)
	return cmd.ExecuteContext(ctx)
}

// exitCode is docker's: a cli.StatusError's code, 128 + the signal that
// ended the command, 1 for any other error.
func exitCode(err, cause error) int {
	if err == nil {
		return 0
	}
	if sig, ok := errors.AsType[terminatedBy](cause); ok {
		return 128 + int(sig.signal)
	}
	if st, ok := errors.AsType[cli.StatusError](err); ok && st.StatusCode != 0 {
		return st.StatusCode
	}
	return 1
}

// terminatedBy is the cause of a context cancelled by a signal.
type terminatedBy struct{ signal syscall.Signal }

func (t terminatedBy) Error() string { return "terminated by " + t.signal.String() }

// withTerminationSignals cancels ctx on the first SIGINT or SIGTERM so that
// streams and waits end cleanly; the third one exits at once, restoring the
// terminal, as docker's CLI does for a command that does not watch its
// context.
func withTerminationSignals(ctx context.Context, streams command.Streams) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	ch := make(chan os.Signal, 3)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		n := 0
		for s := range ch {
			if n++; n == 1 {
				cancel(terminatedBy{signal: s.(syscall.Signal)})
				continue
			}
			if n == 3 {
				io.WriteString(streams.Err(), "\ngot 3 SIGTERM/SIGINTs, forcefully exiting\n")
				streams.In().RestoreTerminal()
				streams.Out().RestoreTerminal()
				os.Exit(1)
			}
		}
	}()
	return ctx, func() { signal.Stop(ch); cancel(nil) }
}

// berthCli is docker's CLI state as every berth command sees it.
//
// BuildKitEnabled is false: berthd builds through the classic POST /build
// (Berth's builder) and serves no BuildKit session, so compose must take
// its classic path rather than hand builds to a buildx plugin that would
// find no BuildKit behind berthd.
type berthCli struct{ *command.DockerCli }

func (berthCli) BuildKitEnabled() (bool, error) { return false, nil }
