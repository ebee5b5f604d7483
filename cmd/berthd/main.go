// Command berthd is Berth's node agent: it serves the CRI and the
// Docker-compatible API over Berth's engine. See daemon.Run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/daemon"
)

const defaultConfigFile = "/etc/berth/config.toml"

func main() {
	closeInheritedOnExec()
	cfg, err := loadConfig(os.Args[1:], defaultConfigFile, os.Stdout, os.Stderr)
	if err == nil && cfg != nil {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = daemon.Run(ctx, *cfg)
		stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berthd: %v\n", err)
		os.Exit(1)
	}
}

// loadConfig builds the daemon's config from the defaults, the config file
// and the flags, in that order of precedence (last wins). A nil config and
// nil error mean there is nothing to run (--version, --help).
func loadConfig(args []string, defaultFile string, stdout, stderr io.Writer) (*daemon.Config, error) {
	fl := flag.NewFlagSet("berthd", flag.ContinueOnError)
	fl.SetOutput(stderr)
	// These flags override the config file only when given, so they are
	// read back by name below rather than through variables.
	fl.String("root", "", "directory for persistent state (default /var/lib/berth)")
	fl.String("state", "", "directory for sockets and runtime state (default /run/berth)")
	fl.String("listen", "", "CRI socket (default <state>/berth.sock)")
	fl.String("docker-listen", "", "Docker API socket (default <state>/docker.sock)")
	fl.String("registry-config-dir", "", "hosts.toml directory for registries (default /etc/berth/certs.d)")
	fl.String("log-level", "", "debug, info, warn or error (default info)")
	fl.String("cni-conf-dir", "", "CNI network config directory (default /etc/cni/net.d)")
	fl.String("cni-bin-dir", "", "CNI plugin directories, colon-separated (default /opt/cni/bin:/usr/lib/cni)")
	fl.String("shim-binary", "", "berth-shim executable (default: next to berthd, else in PATH)")
	fl.String("nri-socket", "", "NRI plugins' socket (default /var/run/nri/nri.sock; [nri] disable = true turns NRI off)")
	var (
		configFile = fl.String("config", defaultFile, "TOML config file; flags override it")
		logFormat  = fl.String("log-format", "text", "text or json")
		version    = fl.Bool("version", false, "print the version and exit")
	)
	if err := fl.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, nil
		}
		return nil, err
	}
	if fl.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fl.Args())
	}
	if *version {
		fmt.Fprintln(stdout, "berthd", daemon.Version)
		return nil, nil
	}

	set := map[string]bool{}
	fl.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := daemon.DefaultConfig()
	data, err := os.ReadFile(*configFile)
	switch {
	case err == nil:
		if err := daemon.ParseConfig(data, &cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", *configFile, err)
		}
	// Without a config file the defaults apply, unless the user named one.
	case errors.Is(err, fs.ErrNotExist) && !set["config"]:
	default:
		return nil, fmt.Errorf("read config: %w", err)
	}
	for name, dst := range map[string]*string{
		"root": &cfg.Root, "state": &cfg.State, "listen": &cfg.Listen, "docker-listen": &cfg.DockerListen,
		"registry-config-dir": &cfg.Images.RegistryConfigDir, "log-level": &cfg.LogLevel,
		"cni-conf-dir": &cfg.CNI.ConfDir, "shim-binary": &cfg.Runtime.ShimBinary,
		"nri-socket": &cfg.NRI.SocketPath,
	} {
		if set[name] {
			*dst = fl.Lookup(name).Value.String()
		}
	}
	if set["cni-bin-dir"] {
		cfg.CNI.BinDirs = filepath.SplitList(fl.Lookup("cni-bin-dir").Value.String())
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}

	level, err := daemon.ParseLogLevel(cfg.LogLevel)
	if err != nil {
		return nil, err
	}
	hopts := &slog.HandlerOptions{Level: level}
	switch *logFormat {
	case "text":
		cfg.Logger = slog.New(slog.NewTextHandler(stderr, hopts))
	case "json":
		cfg.Logger = slog.New(slog.NewJSONHandler(stderr, hopts))
	default:
		return nil, fmt.Errorf("--log-format %q is not text or json", *logFormat)
	}
	return &cfg, nil
}

// closeInheritedOnExec marks every file descriptor above stderr
// close-on-exec. berthd opens its own files so; those it inherited from
// whatever started it (flock's lock file, make's jobserver pipe) would
// otherwise pass into every shim it starts, and a shim outlives berthd
// and holds them for as long as its container lives: a `flock LOCK make
// up` left the lock held by the shims after berthd was gone.
func closeInheritedOnExec() {
	if unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	// Before Linux 5.11: one at a time.
	ents, _ := os.ReadDir("/proc/self/fd")
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
