package cni

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// loopbackConf brings up lo in every pod; containerd runs the same built-in
// network, so node configs never need to list loopback.
var loopbackConf = []byte(`{"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"}`)

// loopbackIfName is the interface the loopback plugin manages.
const loopbackIfName = "lo"

// Manager runs CNI plugins for pods. It is safe for concurrent use; calls
// for the same pod must not overlap (the caller serialises a pod's steps).
type Manager struct {
	cfg      Config
	exec     invoke.Exec
	cni      *libcni.CNIConfig
	loopback *libcni.NetworkConfig

	// readyMu guards ready, the outcome of the last plugin version check,
	// kept while the config file and plugin binaries are unchanged.
	readyMu sync.Mutex
	ready   readyCache
}

// New returns a Manager for cfg (validated here). It creates CacheDir and
// IntentDir; a missing ConfDir or plugin is not an error (Ready reports
// it) because a node's network is often installed after the runtime
// starts.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	for _, d := range []string{cfg.CacheDir, cfg.IntentDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create cni state dir: %w", err)
		}
	}
	lo, err := libcni.NetworkPluginConfFromBytes(loopbackConf)
	if err != nil {
		return nil, fmt.Errorf("parse built-in loopback config: %w", err)
	}
	// An explicit exec: libcni would otherwise create one lazily, a data
	// race between concurrent calls. Plugins' stderr is dropped: their
	// errors come back as JSON on stdout and end up in the returned error.
	exec := &invoke.DefaultExec{RawExec: &invoke.RawExec{}, PluginDecoder: version.PluginDecoder{}}
	return &Manager{
		cfg:      cfg,
		exec:     exec,
		cni:      libcni.NewCNIConfigWithCacheDir(cfg.BinDirs, cfg.CacheDir, exec),
		loopback: lo,
	}, nil
}

// Config returns the validated configuration.
func (m *Manager) Config() Config { return m.cfg }

// network is a loaded config and the file it came from.
type network struct {
	path string
	list *libcni.NetworkConfigList
}

// confExtensions are the file types the kubelet and containerd load.
var confExtensions = []string{".conflist", ".conf", ".json"}

// loadNetwork returns the first usable network config in ConfDir in lexical
// order. Files that do not parse are skipped (as the kubelet does) and
// named in the error when no file is usable.
func (m *Manager) loadNetwork() (network, error) {
	files, err := libcni.ConfFiles(m.cfg.ConfDir, confExtensions)
	if err != nil {
		return network{}, fmt.Errorf("read cni config dir %s: %w", m.cfg.ConfDir, err)
	}
	slices.Sort(files)
	var skipped []string
	for _, f := range files {
		list, err := loadFile(f)
		if err != nil {
			skipped = append(skipped, err.Error())
			continue
		}
		return network{path: f, list: list}, nil
	}
	if len(skipped) > 0 {
		return network{}, fmt.Errorf("no usable cni config in %s: %w: %s", m.cfg.ConfDir, errdefs.ErrFailedPrecondition, strings.Join(skipped, "; "))
	}
	return network{}, fmt.Errorf("no cni config in %s: %w", m.cfg.ConfDir, errdefs.ErrFailedPrecondition)
}

func loadFile(path string) (*libcni.NetworkConfigList, error) {
	var (
		list *libcni.NetworkConfigList
		err  error
	)
	if filepath.Ext(path) == ".conflist" {
		list, err = libcni.ConfListFromFile(path)
	} else {
		var conf *libcni.NetworkConfig
		conf, err = libcni.ConfFromFile(path)
		if err == nil {
			list, err = libcni.ConfListFromConf(conf)
		}
	}
	switch {
	case err != nil:
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	case len(list.Plugins) == 0:
		return nil, fmt.Errorf("%s: no plugins", filepath.Base(path))
	case list.Name == "":
		return nil, fmt.Errorf("%s: no network name", filepath.Base(path))
	}
	for _, p := range list.Plugins {
		if p.Network == nil || p.Network.Type == "" {
			return nil, fmt.Errorf("%s: a plugin has no type", filepath.Base(path))
		}
	}
	return list, nil
}

// readyCache remembers a successful check while nothing it depends on
// changed; a failed check is never cached so a fix shows at once.
type readyCache struct {
	key string
	ok  bool
}

// Ready reports whether pods can be attached: a usable config exists, and
// loopback and every plugin it names are found in BinDirs and support its
// cniVersion. When not ready the message says why (for the CRI Status
// NetworkReady condition). It execs each plugin's VERSION only when the
// config file or a plugin binary changed since the last successful check.
func (m *Manager) Ready(ctx context.Context) (bool, string) {
	net, err := m.loadNetwork()
	if err != nil {
		return false, err.Error()
	}
	key, err := m.readyKey(net)
	if err != nil {
		return false, err.Error()
	}
	m.readyMu.Lock()
	cached := m.ready
	m.readyMu.Unlock()
	if cached.ok && cached.key == key {
		return true, ""
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.cni.ValidateNetworkList(ctx, net.list); err != nil {
		return false, fmt.Sprintf("cni config %s: %v", filepath.Base(net.path), err)
	}
	if _, err := m.cni.ValidateNetwork(ctx, m.loopback); err != nil {
		return false, fmt.Sprintf("built-in loopback network: %v", err)
	}
	m.readyMu.Lock()
	m.ready = readyCache{key: key, ok: true}
	m.readyMu.Unlock()
	return true, ""
}

// readyKey names the config file's and the plugins' current versions by
// path, size and mtime; it fails when a plugin is missing.
func (m *Manager) readyKey(net network) (string, error) {
	var b strings.Builder
	stamp := func(path string) error {
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s:%d:%d;", path, fi.Size(), fi.ModTime().UnixNano())
		return nil
	}
	if err := stamp(net.path); err != nil {
		return "", fmt.Errorf("cni config %s: %w", net.path, err)
	}
	types := []string{m.loopback.Network.Type}
	for _, p := range net.list.Plugins {
		types = append(types, p.Network.Type)
	}
	for _, t := range types {
		path, err := invoke.FindInPath(t, m.cfg.BinDirs)
		if err != nil {
			return "", fmt.Errorf("cni plugin %q not found in %s", t, strings.Join(m.cfg.BinDirs, ":"))
		}
		if err := stamp(path); err != nil {
			return "", fmt.Errorf("cni plugin %s: %w", path, err)
		}
	}
	return b.String(), nil
}
