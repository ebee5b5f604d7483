package logs

import (
	"maps"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/runtime"
)

func newManager(t *testing.T, c Config) *Manager {
	t.Helper()
	m, err := New(Options{Config: c, Hostname: "node1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func TestResolveMergesDefaultsAsDockerd(t *testing.T) {
	m := newManager(t, Config{Driver: JSONFile, Opts: map[string]string{"max-size": "10m", "max-file": "5", "cache-max-size": "5m"}})
	tests := []struct {
		in   container.LogConfig
		want container.LogConfig
	}{
		{container.LogConfig{}, container.LogConfig{Type: JSONFile, Config: map[string]string{"max-size": "10m", "max-file": "5", "cache-max-size": "5m"}}},
		{container.LogConfig{Type: JSONFile, Config: map[string]string{"max-size": "1m"}}, container.LogConfig{Type: JSONFile, Config: map[string]string{"max-size": "1m", "max-file": "5", "cache-max-size": "5m"}}},
		// Another driver gets only the cache options of the default.
		{container.LogConfig{Type: Local}, container.LogConfig{Type: Local, Config: map[string]string{"cache-max-size": "5m"}}},
		{container.LogConfig{Type: GELF, Config: map[string]string{"gelf-address": "udp://127.0.0.1:12201"}}, container.LogConfig{Type: GELF, Config: map[string]string{"gelf-address": "udp://127.0.0.1:12201", "cache-max-size": "5m"}}},
		{container.LogConfig{Type: None}, container.LogConfig{Type: None, Config: map[string]string{"cache-max-size": "5m"}}},
	}
	for _, tt := range tests {
		got, err := m.Resolve(tt.in)
		if err != nil {
			t.Errorf("%+v: %v", tt.in, err)
			continue
		}
		if got.Type != tt.want.Type || !maps.Equal(got.Config, tt.want.Config) {
			t.Errorf("Resolve(%+v) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

// TestResolveRefusesAsDockerd: bad drivers and options fail at create
// with dockerd's messages, as invalid arguments (400).
func TestResolveRefusesAsDockerd(t *testing.T) {
	m := newManager(t, DefaultConfig())
	tests := []struct {
		driver string
		opts   map[string]string
		want   string
	}{
		{"syslog", nil, "logger: no log driver named 'syslog' is registered"},
		{JSONFile, map[string]string{"foo": "bar"}, "unknown log opt 'foo' for json-file log driver"},
		{Local, map[string]string{"labels": "a"}, "unknown log opt 'labels' for log driver local"},
		{Fluentd, map[string]string{"gelf-address": "x"}, "unknown log opt 'gelf-address' for fluentd log driver"},
		{GELF, map[string]string{"gelf-address": "udp://h:1", "fluentd-address": "x"}, `unknown log opt "fluentd-address" for gelf log driver`},
		{JSONFile, map[string]string{"mode": "sometimes"}, "logger: logging mode not supported: sometimes"},
		{JSONFile, map[string]string{"max-buffer-size": "1m"}, "logger: max-buffer-size option is only supported with 'mode=non-blocking'"},
		{JSONFile, map[string]string{"mode": "non-blocking", "max-buffer-size": "lots"}, "error parsing option max-buffer-size"},
		{GELF, map[string]string{"gelf-address": "udp://h:1", "cache-disabled": "maybe"}, "invalid value for option cache-disabled: maybe"},
		{JSONFile, map[string]string{"max-size": "0"}, "max-size must be a positive number"},
		{JSONFile, map[string]string{"max-size": "-1"}, "invalid size: '-1'"},
		{JSONFile, map[string]string{"max-size": "ten"}, "invalid value for max-size: ten"},
		{JSONFile, map[string]string{"max-file": "0"}, "max-file cannot be less than 1"},
		{JSONFile, map[string]string{"compress": "true", "max-file": "1", "max-size": "1m"}, "compress cannot be true when max-file is less than 2 or max-size is not set"},
		{JSONFile, map[string]string{"compress": "true", "max-file": "3", "max-size": ""}, "invalid value for max-size"},
		{Local, map[string]string{"max-file": "1"}, "compression cannot be enabled when max file count is 1"},
		{JSONFile, map[string]string{"tag": "{{.Nope}}"}, "tag:"},
		{JSONFile, map[string]string{"labels-regex": "("}, "labels-regex:"},
		{GELF, nil, "gelf-address is a required parameter"},
		{GELF, map[string]string{"gelf-address": "127.0.0.1:12201"}, "gelf-address should be in form proto://address, got 127.0.0.1:12201"},
		{GELF, map[string]string{"gelf-address": "http://h:1"}, "gelf: endpoint needs to be TCP or UDP"},
		{GELF, map[string]string{"gelf-address": "udp://h"}, "gelf: please provide gelf-address as proto://host:port"},
		{GELF, map[string]string{"gelf-address": "tcp://h:1", "gelf-compression-type": "gzip"}, "compression is only supported on UDP"},
		{GELF, map[string]string{"gelf-address": "udp://h:1", "gelf-compression-type": "lz4"}, `unknown value "lz4" for log opt "gelf-compression-type" for gelf log driver`},
		{GELF, map[string]string{"gelf-address": "udp://h:1", "gelf-compression-level": "12"}, `unknown value "12" for log opt "gelf-compression-level" for gelf log driver`},
		{GELF, map[string]string{"gelf-address": "udp://h:1", "gelf-tcp-max-reconnect": "3"}, `"gelf-tcp-max-reconnect" is only valid for TCP`},
		{GELF, map[string]string{"gelf-address": "tcp://h:1", "gelf-tcp-reconnect-delay": "-1"}, `"gelf-tcp-reconnect-delay" must be a positive integer`},
		{Fluentd, map[string]string{"fluentd-address": "tcp://h:port"}, "invalid fluentd-address tcp://h:port"},
		{Fluentd, map[string]string{"fluentd-address": "ftp://h:1"}, "invalid fluentd-address ftp://h:1: unsupported scheme: 'ftp'"},
		{Fluentd, map[string]string{"fluentd-async": "true", "fluentd-async-connect": "true"}, "conflicting options"},
		{Fluentd, map[string]string{"fluentd-retry-wait": "soon"}, "invalid fluentd-retry-wait soon"},
		{Fluentd, map[string]string{"fluentd-async-reconnect-interval": "1h"}, "must be between 100ms and 10s"},
	}
	for _, tt := range tests {
		_, err := m.Resolve(container.LogConfig{Type: tt.driver, Config: tt.opts})
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s %v: error %v, want invalid argument %q", tt.driver, tt.opts, err, tt.want)
		}
	}
	// none takes anything, as in dockerd.
	if _, err := m.Resolve(container.LogConfig{Type: None, Config: map[string]string{"whatever": "x"}}); err != nil {
		t.Errorf("none with options: %v", err)
	}
	if _, err := New(Options{Config: Config{Driver: JSONFile, Opts: map[string]string{"max-sise": "1m"}}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("bad daemon default: %v", err)
	}
}

func TestRuntimeLogPerDriver(t *testing.T) {
	m := newManager(t, DefaultConfig())
	dir := t.TempDir()
	id := strings.Repeat("ab", 32)
	base := Container{ID: id, Name: "/web", Dir: dir, Labels: map[string]string{"app": "shop", "tier": "front"}, Env: []string{"REGION=eu", "X=1"}}
	tests := []struct {
		lc       container.LogConfig
		wantPath string
		want     runtime.LogConfig
	}{
		{container.LogConfig{}, id + "-json.log", runtime.LogConfig{Format: runtime.LogFormatJSON, MaxSize: 10_000_000, MaxFiles: 5}},
		{container.LogConfig{Type: JSONFile, Config: map[string]string{"labels": "app,missing", "env": "REGION", "tag": "{{.Name}}/{{.ID}}", "mode": "non-blocking", "max-buffer-size": "2m"}},
			id + "-json.log", runtime.LogConfig{Format: runtime.LogFormatJSON, MaxSize: 10_000_000, MaxFiles: 5, Attrs: map[string]string{"app": "shop", "REGION": "eu", "tag": "web/abababababab"}, NonBlocking: true, MaxBuffer: 2 << 20}},
		{container.LogConfig{Type: Local}, "local-logs/container.log", runtime.LogConfig{Format: runtime.LogFormatLocal, MaxSize: 20_000_000, MaxFiles: 5, Compress: true}},
		{container.LogConfig{Type: Local, Config: map[string]string{"max-size": "1k", "max-file": "2", "compress": "false"}}, "local-logs/container.log", runtime.LogConfig{Format: runtime.LogFormatLocal, MaxSize: 1000, MaxFiles: 2}},
		{container.LogConfig{Type: None}, "", runtime.LogConfig{}},
		{container.LogConfig{Type: GELF, Config: map[string]string{"gelf-address": "udp://127.0.0.1:1"}}, "container-cached.log", runtime.LogConfig{Format: runtime.LogFormatLocal, MaxSize: 20_000_000, MaxFiles: 5, Compress: true, NonBlocking: true, MaxBuffer: 1_000_000}},
		{container.LogConfig{Type: Fluentd, Config: map[string]string{"mode": "blocking", "cache-max-size": "1m", "cache-max-file": "2", "cache-compress": "false"}}, "container-cached.log", runtime.LogConfig{Format: runtime.LogFormatLocal, MaxSize: 1_000_000, MaxFiles: 2, MaxBuffer: 1_000_000}},
		{container.LogConfig{Type: Fluentd, Config: map[string]string{"cache-disabled": "true"}}, "container-cached.log", runtime.LogConfig{Format: runtime.LogFormatLocal, MaxSize: 1 << 20, MaxFiles: 2, NonBlocking: true, MaxBuffer: 1_000_000}},
	}
	for _, tt := range tests {
		lc, err := m.Resolve(tt.lc)
		if err != nil {
			t.Fatal(err)
		}
		c := base
		c.LogConfig = lc
		path, rc, err := m.RuntimeLog(c)
		if err != nil {
			t.Fatalf("%+v: %v", tt.lc, err)
		}
		wantPath := ""
		if tt.wantPath != "" {
			wantPath = filepath.Join(dir, tt.wantPath)
		}
		if path != wantPath || rc.Format != tt.want.Format || rc.MaxSize != tt.want.MaxSize || rc.MaxFiles != tt.want.MaxFiles ||
			rc.Compress != tt.want.Compress || rc.NonBlocking != tt.want.NonBlocking || (tt.want.NonBlocking && rc.MaxBuffer != tt.want.MaxBuffer) || !maps.Equal(rc.Attrs, tt.want.Attrs) {
			t.Errorf("%+v:\n got %s %+v\nwant %s %+v", tt.lc, path, rc, wantPath, tt.want)
		}
	}
	c := base
	c.LogConfig = container.LogConfig{Type: JSONFile}
	if LogPath(c) != filepath.Join(dir, id+"-json.log") {
		t.Errorf("inspect LogPath %q", LogPath(c))
	}
	c.LogConfig.Type = Local
	if LogPath(c) != "" {
		t.Errorf("inspect LogPath of local %q, want none as dockerd", LogPath(c))
	}
}

func TestTagTemplates(t *testing.T) {
	c := Container{ID: strings.Repeat("0123456789", 6) + "abcd", Name: "/db", ImageID: "sha256:feedbeefcafe0000", ImageName: "postgres:16",
		LogConfig: container.LogConfig{Config: map[string]string{}}}
	for tmpl, want := range map[string]string{
		"":                                "012345678901",
		"{{.FullID}}":                     c.ID,
		"{{.Name}}|{{.ImageName}}":        "db|postgres:16",
		"{{.ImageID}}":                    "sha256:feedb",
		"{{upper .Name}}.{{.DaemonName}}": "DB.docker",
		"{{truncate .Name 1}}":            "d",
	} {
		c.LogConfig.Config["tag"] = tmpl
		got, err := renderTag(c, defaultTag)
		if err != nil || got != want {
			t.Errorf("tag %q = %q, %v; want %q", tmpl, got, err, want)
		}
	}
}
