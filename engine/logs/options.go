package logs

import (
	"compress/flate"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Graylog2/go-gelf/gelf"
	"github.com/containerd/errdefs"
	units "github.com/docker/go-units"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime"
	"github.com/berth-dev/berth/runtime/logfile"
)

// Options every driver accepts (dockerd's builtInLogOpts, with the
// cache-* ones of dual logging).
var builtinOpts = map[string]bool{
	"mode": true, "max-buffer-size": true,
	"cache-disabled": true, "cache-max-size": true, "cache-max-file": true, "cache-compress": true,
}

var cacheOpts = map[string]bool{"cache-disabled": true, "cache-max-size": true, "cache-max-file": true, "cache-compress": true}

// Each driver's own options.
var driverOpts = map[string]map[string]bool{
	JSONFile: set("max-file", "max-size", "compress", "labels", "labels-regex", "env", "env-regex", "tag"),
	Local:    set("max-file", "max-size", "compress"),
	GELF: set("gelf-address", "tag", "labels", "labels-regex", "env", "env-regex",
		"gelf-compression-level", "gelf-compression-type", "gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay"),
	Fluentd: set("env", "env-regex", "labels", "labels-regex", "tag", "fluentd-address", "fluentd-async",
		"fluentd-async-connect", "fluentd-async-reconnect-interval", "fluentd-buffer-limit", "fluentd-max-retries",
		"fluentd-request-ack", "fluentd-retry-wait", "fluentd-sub-second-precision", "fluentd-write-timeout"),
	None: nil,
}

func set(keys ...string) map[string]bool {
	m := map[string]bool{}
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// invalid is an invalid argument with dockerd's message, as is (the
// docker CLI prints it after "Error response from daemon: ").
func invalid(format string, args ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
}

// validate checks a driver and its options with dockerd's messages
// (logger.ValidateLogOpts and the drivers' validators), and the values
// dockerd would only refuse when the container starts.
func validate(driver string, opts map[string]string) error {
	if driver == None {
		return nil
	}
	switch container.LogMode(opts["mode"]) {
	case container.LogModeUnset, container.LogModeBlocking, container.LogModeNonBlock:
	default:
		return invalid("logger: logging mode not supported: %s", opts["mode"])
	}
	if s, ok := opts["max-buffer-size"]; ok {
		if container.LogMode(opts["mode"]) != container.LogModeNonBlock {
			return invalid("logger: max-buffer-size option is only supported with 'mode=%s'", container.LogModeNonBlock)
		}
		if _, err := units.RAMInBytes(s); err != nil {
			return invalid("error parsing option max-buffer-size: %v", err)
		}
	}
	if v := opts["cache-disabled"]; v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return invalid("invalid value for option cache-disabled: %s", v)
		}
	}
	own, ok := driverOpts[driver]
	if !ok {
		return invalid("logger: no log driver named '%s' is registered", driver)
	}
	for k := range opts {
		if builtinOpts[k] || own[k] {
			continue
		}
		switch driver {
		case JSONFile, Fluentd:
			return invalid("unknown log opt '%s' for %s log driver", k, driver)
		case Local:
			return invalid("unknown log opt '%s' for log driver %s", k, driver)
		default:
			return invalid("unknown log opt %q for %s log driver", k, driver)
		}
	}
	_, err := parse(Container{ID: strings.Repeat("0", 64), LogConfig: container.LogConfig{Type: driver, Config: opts}, Dir: "/"})
	return err
}

// plan is how one container logs: the file its shim writes, and what
// berthd does with it.
type plan struct {
	driver string
	// path is the file the shim writes; "" discards the output.
	path string
	file runtime.LogConfig
	// readable: docker logs reads path.
	readable bool
	// remote is the forwarder's sink; nil for local drivers.
	remote sinkConfig
	// The forwarder's buffer: dropping when full (non-blocking) or not.
	dropWhenFull bool
	maxBuffer    int64
}

// Defaults of the local driver and of dual logging's cache.
const (
	localMaxSize  = "20m"
	localMaxFile  = 5
	spoolMaxSize  = 1 << 20
	spoolMaxFiles = 2
)

// parse turns a resolved log config into a plan, checking every value.
func parse(c Container) (plan, error) {
	opts := c.LogConfig.Config
	p := plan{driver: c.LogConfig.Type}
	mode := container.LogMode(opts["mode"])
	p.maxBuffer = logfile.DefaultMaxBuffer
	if s, ok := opts["max-buffer-size"]; ok {
		n, err := units.RAMInBytes(s)
		if err != nil {
			return plan{}, invalid("error parsing option max-buffer-size: %v", err)
		}
		p.maxBuffer = n
	}
	switch p.driver {
	case None:
		return p, nil
	case JSONFile:
		p.path, p.readable = filepath.Join(c.Dir, c.ID+"-json.log"), true
		p.file = runtime.LogConfig{Format: runtime.LogFormatJSON, MaxFiles: 1}
		if err := parseRotation(&p.file, opts, "", -1, 1, false); err != nil {
			return plan{}, err
		}
		attrs, err := extraAttrs(c, nil)
		if err != nil {
			return plan{}, err
		}
		// No default tag: only a tag the user asked for goes in.
		if opts["tag"] != "" {
			tag, err := renderTag(c, "")
			if err != nil {
				return plan{}, err
			}
			attrs["tag"] = tag
		}
		if len(attrs) > 0 {
			p.file.Attrs = attrs
		}
		p.file.NonBlocking, p.file.MaxBuffer = mode == container.LogModeNonBlock, p.maxBuffer
		return p, nil
	case Local:
		p.path, p.readable = filepath.Join(c.Dir, localLog), true
		p.file = runtime.LogConfig{Format: runtime.LogFormatLocal}
		if err := parseRotation(&p.file, opts, "", mustSize(localMaxSize), localMaxFile, true); err != nil {
			return plan{}, err
		}
		p.file.NonBlocking, p.file.MaxBuffer = mode == container.LogModeNonBlock, p.maxBuffer
		return p, nil
	case GELF, Fluentd:
	default:
		return plan{}, invalid("logger: no log driver named '%s' is registered", p.driver)
	}
	var err error
	if p.driver == GELF {
		p.remote, err = parseGELF(c)
	} else {
		p.remote, err = parseFluentd(c)
	}
	if err != nil {
		return plan{}, err
	}
	disabled, _ := strconv.ParseBool(opts["cache-disabled"])
	p.path, p.readable = filepath.Join(c.Dir, cacheLog), !disabled
	p.file = runtime.LogConfig{Format: runtime.LogFormatLocal}
	if disabled {
		p.file.MaxSize, p.file.MaxFiles = spoolMaxSize, spoolMaxFiles
	} else if err := parseRotation(&p.file, opts, "cache-", mustSize(localMaxSize), localMaxFile, true); err != nil {
		return plan{}, err
	}
	// dockerd's cache is non-blocking unless mode=blocking.
	p.file.NonBlocking, p.file.MaxBuffer = mode != container.LogModeBlocking, p.maxBuffer
	p.dropWhenFull = mode != container.LogModeBlocking
	return p, nil
}

func mustSize(s string) int64 {
	n, err := units.FromHumanSize(s)
	if err != nil {
		panic(err)
	}
	return n
}

// parseRotation reads [prefix]max-size, max-file and compress with
// dockerd's rules: json-file (no size default) refuses compress without
// rotation, local refuses compress with one file.
func parseRotation(l *runtime.LogConfig, opts map[string]string, prefix string, defSize int64, defFiles int, defCompress bool) error {
	size := defSize
	if v, ok := opts[prefix+"max-size"]; ok {
		n, err := units.FromHumanSize(v)
		if err != nil {
			return invalid("invalid value for %smax-size: %s: %v", prefix, v, err)
		}
		if n <= 0 && defSize < 0 {
			return invalid("max-size must be a positive number")
		}
		if n < 0 {
			return invalid("%smax-size must not be negative", prefix)
		}
		size = n
	}
	files := defFiles
	if v, ok := opts[prefix+"max-file"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			return invalid("invalid value for %smax-file: %s: %v", prefix, v, err)
		}
		if defSize < 0 && n < 1 {
			return invalid("max-file cannot be less than 1")
		}
		if n < 0 {
			return invalid("%smax-file must not be negative", prefix)
		}
		files = n
	}
	compress := defCompress
	if v, ok := opts[prefix+"compress"]; ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return invalid("invalid boolean value for %scompress: %v", prefix, err)
		}
		compress = b
	}
	if compress {
		if defSize < 0 && (files < 2 || size < 0) {
			return invalid("compress cannot be true when max-file is less than 2 or max-size is not set")
		}
		if defSize >= 0 && files <= 1 {
			return invalid("compression cannot be enabled when max file count is 1")
		}
	}
	if size > 0 {
		l.MaxSize = size
	}
	l.MaxFiles, l.Compress = files, compress
	return nil
}

// extraAttrs are dockerd's ExtraAttributes: the labels and env variables
// the labels, labels-regex, env and env-regex options select.
func extraAttrs(c Container, keyMod func(string) string) (map[string]string, error) {
	opts := c.LogConfig.Config
	out := map[string]string{}
	put := func(k, v string) {
		if keyMod != nil {
			k = keyMod(k)
		}
		out[k] = v
	}
	if l := opts["labels"]; l != "" {
		for _, k := range strings.Split(l, ",") {
			if v, ok := c.Labels[k]; ok {
				put(k, v)
			}
		}
	}
	if r := opts["labels-regex"]; r != "" {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, invalid("labels-regex: %v", err)
		}
		for k, v := range c.Labels {
			if re.MatchString(k) {
				put(k, v)
			}
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if k, v, ok := strings.Cut(e, "="); ok {
			env[k] = v
		}
	}
	if l := opts["env"]; l != "" {
		for _, k := range strings.Split(l, ",") {
			if v, ok := env[k]; ok {
				put(k, v)
			}
		}
	}
	if r := opts["env-regex"]; r != "" {
		re, err := regexp.Compile(r)
		if err != nil {
			return nil, invalid("env-regex: %v", err)
		}
		for k, v := range env {
			if re.MatchString(k) {
				put(k, v)
			}
		}
	}
	return out, nil
}

// gelfConfig is a gelf driver's endpoint and message fields.
type gelfConfig struct {
	network          string // udp or tcp
	address          string
	compressionType  string // gzip (default), zlib, none
	compressionLevel int
	maxReconnect     int
	// reconnectDelay is in seconds (go-gelf's unit).
	reconnectDelay int
	extra          map[string]any
}

func parseGELF(c Container) (*gelfConfig, error) {
	opts := c.LogConfig.Config
	addr := opts["gelf-address"]
	if addr == "" {
		return nil, invalid("gelf-address is a required parameter")
	}
	u, err := url.Parse(addr)
	if err != nil || !strings.Contains(addr, "://") {
		return nil, invalid("gelf-address should be in form proto://address, got %v", addr)
	}
	if u.Scheme != "udp" && u.Scheme != "tcp" {
		return nil, invalid("gelf: endpoint needs to be TCP or UDP")
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, invalid("gelf: please provide gelf-address as proto://host:port")
	}
	g := &gelfConfig{network: u.Scheme, address: u.Host, compressionType: "gzip", compressionLevel: flate.BestSpeed, maxReconnect: gelf.DefaultMaxReconnect, reconnectDelay: gelf.DefaultReconnectDelay}
	for key, val := range opts {
		switch key {
		case "gelf-compression-level":
			if u.Scheme != "udp" {
				return nil, invalid("compression is only supported on UDP")
			}
			i, err := strconv.Atoi(val)
			if err != nil || i < flate.DefaultCompression || i > flate.BestCompression {
				return nil, invalid("unknown value %q for log opt %q for gelf log driver", val, key)
			}
			g.compressionLevel = i
		case "gelf-compression-type":
			if u.Scheme != "udp" {
				return nil, invalid("compression is only supported on UDP")
			}
			switch val {
			case "gzip", "zlib", "none":
				g.compressionType = val
			default:
				return nil, invalid("unknown value %q for log opt %q for gelf log driver", val, key)
			}
		case "gelf-tcp-max-reconnect", "gelf-tcp-reconnect-delay":
			if u.Scheme != "tcp" {
				return nil, invalid("%q is only valid for TCP", key)
			}
			i, err := strconv.Atoi(val)
			if err != nil || i < 0 {
				return nil, invalid("%q must be a positive integer", key)
			}
			if key == "gelf-tcp-max-reconnect" {
				g.maxReconnect = i
			} else {
				g.reconnectDelay = i
			}
		}
	}
	tag, err := renderTag(c, defaultTag)
	if err != nil {
		return nil, err
	}
	g.extra = map[string]any{
		"_container_id":   c.ID,
		"_container_name": strings.TrimPrefix(c.Name, "/"),
		"_image_id":       c.ImageID,
		"_image_name":     c.ImageName,
		"_command":        strings.Join(append([]string{c.Path}, c.Args...), " "),
		"_tag":            tag,
		"_created":        c.Created,
	}
	attrs, err := extraAttrs(c, func(k string) string {
		if strings.HasPrefix(k, "_") {
			return k
		}
		return "_" + k
	})
	if err != nil {
		return nil, err
	}
	for k, v := range attrs {
		g.extra[k] = v
	}
	return g, nil
}

// fluentdConfig is a fluentd driver's endpoint and record fields.
type fluentdConfig struct {
	network, host, socketPath string
	port                      int
	bufferLimit               int
	retryWait                 time.Duration
	maxRetries                int
	subSecond, requestAck     bool
	writeTimeout              time.Duration
	tag                       string
	extra                     map[string]string
	containerID               string
	containerName             string
	partials                  partials
}

func parseFluentd(c Container) (*fluentdConfig, error) {
	opts := c.LogConfig.Config
	f := &fluentdConfig{network: "tcp", host: "127.0.0.1", port: 24224, bufferLimit: 1024 * 1024, retryWait: time.Second, maxRetries: 1<<31 - 1}
	if a := opts["fluentd-address"]; a != "" {
		addr := a
		if strings.Contains(a, "://") {
			u, err := url.Parse(a)
			if err != nil {
				return nil, invalid("invalid fluentd-address %s: %v", a, err)
			}
			switch u.Scheme {
			case "unix":
				f.network, f.socketPath = "unix", u.Path
				addr = ""
			case "tcp":
				addr = u.Host
			case "tls":
				return nil, fmt.Errorf("fluentd-address %s: tls: %w", a, errdefs.ErrNotImplemented)
			default:
				return nil, invalid("invalid fluentd-address %s: unsupported scheme: '%s'", a, u.Scheme)
			}
		}
		if addr != "" {
			host, port, err := net.SplitHostPort(addr)
			if err != nil {
				if !strings.Contains(err.Error(), "missing port in address") {
					return nil, invalid("invalid fluentd-address %s: %v", a, err)
				}
				host, port = addr, "24224"
			}
			p, err := strconv.Atoi(port)
			if err != nil {
				return nil, invalid("invalid fluentd-address %s: %v", a, err)
			}
			f.host, f.port = host, p
		}
	}
	if v := opts["fluentd-buffer-limit"]; v != "" {
		n, err := units.RAMInBytes(v)
		if err != nil {
			return nil, invalid("invalid fluentd-buffer-limit %s: %v", v, err)
		}
		f.bufferLimit = int(n)
	}
	if v := opts["fluentd-retry-wait"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, invalid("invalid fluentd-retry-wait %s: %v", v, err)
		}
		f.retryWait = d
	}
	if v := opts["fluentd-max-retries"]; v != "" {
		n, err := strconv.ParseUint(v, 10, strconv.IntSize)
		if err != nil {
			return nil, invalid("invalid fluentd-max-retries %s: %v", v, err)
		}
		f.maxRetries = int(n)
	}
	if opts["fluentd-async"] != "" && opts["fluentd-async-connect"] != "" {
		return nil, invalid("conflicting options: cannot specify both 'fluentd-async' and 'fluentd-async-connect")
	}
	// fluentd-async and fluentd-async-connect only say whether a
	// container may start while the endpoint is down: here it always may
	// (berthd follows the cache file), so they are checked and ignored.
	for _, k := range []string{"fluentd-async", "fluentd-async-connect", "fluentd-sub-second-precision", "fluentd-request-ack"} {
		if v := opts[k]; v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return nil, invalid("invalid value for %s: %v", k, err)
			}
			switch k {
			case "fluentd-sub-second-precision":
				f.subSecond = b
			case "fluentd-request-ack":
				f.requestAck = b
			}
		}
	}
	if v := opts["fluentd-async-reconnect-interval"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, invalid("invalid value for fluentd-async-reconnect-interval: %v", err)
		}
		if d != 0 && (d < 100*time.Millisecond || d > 10*time.Second) {
			return nil, invalid("invalid value for fluentd-async-reconnect-interval: value (%q) must be between 100ms and 10s", d)
		}
	}
	if v := opts["fluentd-write-timeout"]; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, invalid("invalid value for fluentd-write-timeout: %v", err)
		}
		f.writeTimeout = d
	}
	tag, err := renderTag(c, defaultTag)
	if err != nil {
		return nil, err
	}
	f.tag, f.containerID, f.containerName = tag, c.ID, c.Name
	if f.extra, err = extraAttrs(c, nil); err != nil {
		return nil, err
	}
	return f, nil
}

// RuntimeLog is what the runtime needs for the container's shim: the log
// file (runtime.ContainerConfig.LogPath; "" discards the output) and its
// format and rotation (ContainerConfig.Log).
func (m *Manager) RuntimeLog(c Container) (string, runtime.LogConfig, error) {
	if c.Dir == "" && c.LogConfig.Type != None {
		return "", runtime.LogConfig{}, fmt.Errorf("log of container %s: %w: %w", c.ID, errNoDir, errdefs.ErrInvalidArgument)
	}
	p, err := parse(c)
	if err != nil {
		return "", runtime.LogConfig{}, fmt.Errorf("log of container %s: %w", c.ID, err)
	}
	return p.path, p.file, nil
}
