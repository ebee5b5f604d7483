// Command registry serves an OCI distribution registry (go-containerregistry's
// pkg/registry) for Berth's tests and scripts, which run without internet.
//
//	go run ./hack/registry --addr 127.0.0.1:5000 [--dir DIR]
//
// It prints "listening on <addr>" once the port is open and exits cleanly on
// SIGTERM or SIGINT. With --dir, blobs are kept on disk under DIR; manifests
// always live in memory, so push again after a restart.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "registry:", err)
		os.Exit(1)
	}
}

// run serves until ctx is done, then shuts down gracefully.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("registry", flag.ContinueOnError)
	addr := fl.String("addr", "127.0.0.1:5000", "address to listen on (port 0: any free port)")
	dir := fl.String("dir", "", "keep blobs on disk in this directory (default: in memory)")
	quiet := fl.Bool("quiet", false, "do not log requests")
	if err := fl.Parse(args); err != nil {
		return err
	}

	logw := stderr
	if *quiet {
		logw = io.Discard
	}
	opts := []registry.Option{registry.Logger(log.New(logw, "registry: ", log.LstdFlags))}
	if *dir != "" {
		if err := os.MkdirAll(*dir, 0o755); err != nil {
			return fmt.Errorf("create blob dir: %w", err)
		}
		opts = append(opts, registry.WithBlobHandler(registry.NewDiskBlobHandler(*dir)))
	}

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *addr, err)
	}
	srv := &http.Server{Handler: registry.New(opts...), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "listening on %s\n", ln.Addr())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// Give running transfers a moment, then cut them: http.Server counts a
	// connection that never sent a request as busy for 5 s, and a test
	// registry must not hold up the script that stops it.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	return nil
}
