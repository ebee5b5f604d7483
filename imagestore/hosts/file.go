package hosts

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/containerd/errdefs"
)

// hostFields are the settings a [host."..."] table and the top level share.
type hostFields struct {
	Capabilities []string       `toml:"capabilities"`
	CA           any            `toml:"ca"`     // string or []string
	Client       any            `toml:"client"` // string, []string or [][2]string
	SkipVerify   *bool          `toml:"skip_verify"`
	Header       map[string]any `toml:"header"` // string or []string values
	OverridePath bool           `toml:"override_path"`
	DialTimeout  string         `toml:"dial_timeout"`
}

type hostsFile struct {
	hostFields
	Server string                `toml:"server"`
	Host   map[string]hostFields `toml:"host"`
}

// loadHostDir reads dir/hosts.toml, or Docker-style certificate files when
// there is none. The last entry is the server; its host is "" when the file
// names none.
func loadHostDir(dir string) ([]entry, error) {
	file := filepath.Join(dir, "hosts.toml")
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return loadCertFiles(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", file, err)
	}
	entries, err := parseHostsFile(dir, b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	return entries, nil
}

func parseHostsFile(dir string, b []byte) ([]entry, error) {
	var f hostsFile
	md, err := toml.Decode(string(b), &f)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	var entries []entry
	// The map loses the file order, which is the order to try mirrors in;
	// the metadata keeps it.
	seen := map[string]bool{}
	for _, key := range md.Keys() {
		if len(key) < 2 || key[0] != "host" || seen[key[1]] {
			continue
		}
		seen[key[1]] = true
		e, err := parseFields(dir, f.Host[key[1]])
		if err != nil {
			return nil, fmt.Errorf("host %q: %w", key[1], err)
		}
		if err := splitServer(key[1], f.Host[key[1]].OverridePath, &e); err != nil {
			return nil, err
		}
		entries = append(entries, e)
	}
	server, err := parseFields(dir, f.hostFields)
	if err != nil {
		return nil, err
	}
	if f.Server != "" {
		if err := splitServer(f.Server, f.OverridePath, &server); err != nil {
			return nil, err
		}
	}
	return append(entries, server), nil
}

func parseFields(dir string, h hostFields) (entry, error) {
	var e entry
	for _, c := range h.Capabilities {
		switch c = strings.ToLower(c); c {
		case CapabilityPull, CapabilityResolve, CapabilityPush:
			e.capabilities = append(e.capabilities, c)
		default:
			return entry{}, fmt.Errorf("%w: unknown capability %q", errdefs.ErrInvalidArgument, c)
		}
	}
	e.skipVerify = h.SkipVerify

	if h.CA != nil {
		files, err := stringList(h.CA)
		if err != nil {
			return entry{}, fmt.Errorf("ca: %w", err)
		}
		for _, f := range files {
			e.caFiles = append(e.caFiles, absPath(dir, f))
		}
	}

	switch c := h.Client.(type) {
	case nil:
	case string:
		e.clientPairs = append(e.clientPairs, [2]string{absPath(dir, c), ""})
	case []any:
		for _, item := range c {
			switch p := item.(type) {
			case string:
				e.clientPairs = append(e.clientPairs, [2]string{absPath(dir, p), ""})
			case []any:
				pair, err := stringList(p)
				if err != nil || len(pair) != 2 {
					return entry{}, fmt.Errorf("client: %w: want [cert, key], got %v", errdefs.ErrInvalidArgument, p)
				}
				e.clientPairs = append(e.clientPairs, [2]string{absPath(dir, pair[0]), absPath(dir, pair[1])})
			default:
				return entry{}, fmt.Errorf("client: %w: unexpected %T", errdefs.ErrInvalidArgument, item)
			}
		}
	default:
		return entry{}, fmt.Errorf("client: %w: unexpected %T", errdefs.ErrInvalidArgument, c)
	}

	if len(h.Header) > 0 {
		e.header = http.Header{}
		for k, v := range h.Header {
			values, err := stringList(v)
			if err != nil {
				return entry{}, fmt.Errorf("header %q: %w", k, err)
			}
			for _, s := range values {
				e.header.Add(k, s)
			}
		}
	}

	if h.DialTimeout != "" {
		d, err := time.ParseDuration(h.DialTimeout)
		if err != nil {
			return entry{}, fmt.Errorf("dial_timeout: %w: %w", errdefs.ErrInvalidArgument, err)
		}
		e.dialTimeout = d
	}
	return e, nil
}

// stringList accepts a string or an array of strings.
func stringList(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, item := range v {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("%w: %v is not a string", errdefs.ErrInvalidArgument, item)
			}
			out = append(out, s)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("%w: want a string or a list of strings, got %T", errdefs.ErrInvalidArgument, v)
	}
}

func absPath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// loadCertFiles reads a directory the way Docker reads certs.d/<host>:
// *.crt are CAs, *.cert client certificates with their *.key.
func loadCertFiles(dir string) ([]entry, error) {
	files, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read certificates in %s: %w", dir, err)
	}
	var e entry
	for _, f := range files {
		if f.IsDir() {
			continue
		}
		name := filepath.Join(dir, f.Name())
		switch {
		case strings.HasSuffix(name, ".crt"):
			e.caFiles = append(e.caFiles, name)
		case strings.HasSuffix(name, ".cert"):
			key := strings.TrimSuffix(name, ".cert") + ".key"
			if _, err := os.Stat(key); err != nil {
				key = "" // the key may be in the .cert file
			}
			e.clientPairs = append(e.clientPairs, [2]string{name, key})
		}
	}
	return []entry{e}, nil
}
