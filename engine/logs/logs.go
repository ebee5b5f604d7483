// Package logs is the standalone engine's log drivers: it checks a
// container's HostConfig.LogConfig as dockerd does, tells the runtime how
// the container's shim writes its log file, reads that file back for
// `docker logs`, and ships it to remote drivers.
//
// Drivers:
//
//   - json-file (dockerd's default): <Dir>/<id>-json.log in docker's
//     JSON-lines format, rotated by the shim (max-size, max-file,
//     compress). Berth's daemon default rotates (max-size=10m, max-file=5).
//   - local: <Dir>/local-logs/container.log in Berth's binary format
//     (runtime/logfile), max-size=20m, max-file=5, compress=true by
//     default, as dockerd's local driver.
//   - none: no file; `docker logs` fails with dockerd's message.
//   - gelf (UDP, TCP; gzip/zlib/none compression) and fluentd (forward
//     protocol): the shim writes a local-format cache,
//     <Dir>/container-cached.log (cache-max-size=20m, cache-max-file=5,
//     cache-compress=true), and berthd follows it and sends each record
//     (dockerd's "dual logging"). A dead endpoint therefore never blocks a
//     container: the container writes to its shim and the shim to the
//     disk. mode=blocking makes the forwarder wait for the endpoint and
//     catch up; mode=non-blocking (and unset, as dockerd's cache) lets it
//     drop what does not fit in max-buffer-size while the endpoint is
//     slow, so it stays near the head of the file. The time of the last
//     record sent is kept in <Dir>/forward.json: after a berthd restart
//     forwarding resumes there. cache-disabled=true keeps only a small
//     spool (two 1 MB files) and makes `docker logs` fail as dockerd does.
//
// The engine calls the Manager; the Manager never calls the engine:
//
//	lc, err := m.Resolve(hostConfig.LogConfig)        // create: defaults merged, validated (400 on error)
//	path, rc, err := m.RuntimeLog(c)                  // -> runtime.ContainerConfig.LogPath, .Log
//	inspectPath := LogPath(c)                         // inspect's LogPath ("" but for json-file)
//	err = m.Start(c)                                  // after each start, and for every container at berthd start-up
//	m.Stop(c.ID)                                      // the container exited: forward the rest, then stop
//	m.Remove(c.ID)                                    // before its directory goes
//	err = m.Read(ctx, c, ReadOptions{...}, w)         // GET /containers/{id}/logs: the whole body
//	err = m.Messages(ctx, c, ReadOptions{...}, fn)    // or record by record, the caller framing them
//
// For the logs endpoint, ParseTail and ParseTime read the tail, since and
// until query values as dockerd does; Read returns before writing
// anything when it refuses (ErrReadNotSupported, 501; no stream asked
// for, 400), so the handler can still answer with an error status.
//
// Container describes the container in each call; Dir is its directory,
// where every file above lives (the engine removes it).
package logs

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
)

// Driver names.
const (
	JSONFile = "json-file"
	Local    = "local"
	None     = "none"
	GELF     = "gelf"
	Fluentd  = "fluentd"
)

// ErrReadNotSupported is what `docker logs` gets for none and for a remote
// driver with cache-disabled: dockerd's message, a NotImplemented (501).
var ErrReadNotSupported = errdefs.ErrNotImplemented.WithMessage("configured logging driver does not support reading")

// Config is the daemon's default log driver: dockerd's log-driver and
// log-opts (daemon.json), the [logging] section of berthd's config.
type Config struct {
	Driver string            `toml:"driver"`
	Opts   map[string]string `toml:"opts"`
}

// DefaultConfig is json-file rotated at 10 MB keeping 5 files: unlike
// dockerd's default, Berth's rotates.
func DefaultConfig() Config {
	return Config{Driver: JSONFile, Opts: map[string]string{"max-size": "10m", "max-file": "5"}}
}

// Validate checks the default as a container's log config is checked.
func (c Config) Validate() error {
	if c.Driver == "" {
		return fmt.Errorf("logging: no default driver: %w", errdefs.ErrInvalidArgument)
	}
	if err := validate(c.Driver, c.Opts); err != nil {
		return fmt.Errorf("logging: %w", err)
	}
	return nil
}

// Container is what the log drivers know of a container.
type Container struct {
	ID   string
	Name string // with or without Docker's leading "/"
	// Dir is the container's directory: its log files live there.
	Dir     string
	Created time.Time
	// ImageID is the image's ID ("sha256:..."), ImageName as the user
	// named it.
	ImageID   string
	ImageName string
	// Path and Args are the process's command line (entrypoint + cmd).
	Path   string
	Args   []string
	Env    []string
	Labels map[string]string
	// TTY: the output is one raw stream, sent unmultiplexed.
	TTY bool
	// LogConfig is the container's, as Resolve returned it.
	LogConfig container.LogConfig
}

// Options configure a Manager.
type Options struct {
	Config Config
	// Logger receives the forwarders' troubles (an endpoint down, a
	// corrupt record); nil discards them.
	Logger *slog.Logger
	// Hostname is GELF's host field; empty means os.Hostname.
	Hostname string
}

// Manager holds the daemon's default and the running forwarders. It is
// safe for concurrent use.
type Manager struct {
	def      Config
	log      *slog.Logger
	hostname string

	mu         sync.Mutex
	forwarders map[string]*forwarder
	closed     bool
}

// New returns a Manager with o's default driver.
func New(o Options) (*Manager, error) {
	if o.Config.Driver == "" {
		o.Config = DefaultConfig()
	}
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{def: o.Config, log: log, hostname: o.Hostname, forwarders: map[string]*forwarder{}}, nil
}

// Default is the daemon's default log config, for /info's LoggingDriver.
func (m *Manager) Default() container.LogConfig {
	return container.LogConfig{Type: m.def.Driver, Config: maps.Clone(m.def.Opts)}
}

// Resolve completes a container's log config at create as dockerd does
// (daemon.mergeAndVerifyLogConfig): no driver means the default one; the
// default driver gets the default options it does not set; every driver
// gets the default's cache-* options. The result is validated with
// dockerd's messages (errdefs.ErrInvalidArgument) and is what inspect
// shows.
func (m *Manager) Resolve(lc container.LogConfig) (container.LogConfig, error) {
	out := container.LogConfig{Type: lc.Type, Config: maps.Clone(lc.Config)}
	if out.Type == "" {
		out.Type = m.def.Driver
	}
	if out.Config == nil {
		out.Config = map[string]string{}
	}
	for k, v := range m.def.Opts {
		if _, set := out.Config[k]; set {
			continue
		}
		if out.Type == m.def.Driver || cacheOpts[k] {
			out.Config[k] = v
		}
	}
	if err := validate(out.Type, out.Config); err != nil {
		return container.LogConfig{}, err
	}
	return out, nil
}

// File names in the container's directory.
const (
	localLog  = "local-logs/container.log"
	cacheLog  = "container-cached.log"
	forwardAt = "forward.json"
)

// LogPath is the LogPath inspect shows: the json-file's path, else "" (as
// dockerd sets it only for json-file).
func LogPath(c Container) string {
	if c.LogConfig.Type != JSONFile {
		return ""
	}
	return filepath.Join(c.Dir, c.ID+"-json.log")
}

var errNoDir = errors.New("container without a directory")
