// Package hosts reads registry host configuration in containerd's hosts.toml
// convention, so that a node's existing /etc/containerd/certs.d-style
// directory works for Berth unchanged.
//
// The directory holds one sub-directory per registry host, named as the host
// appears in image references ("docker.io", "registry.k8s.io",
// "127.0.0.1:5000", or "127.0.0.1_5000_" where a colon is unwelcome), plus
// an optional "_default" used for hosts that have none of their own. Each
// holds a hosts.toml:
//
//	server = "https://registry.example.com"   # upstream; default from the host name
//	ca = "ca.crt"                              # applies to server
//
//	[host."http://127.0.0.1:5000"]             # mirrors, tried in file order
//	  capabilities = ["pull", "resolve"]
//	  skip_verify = true
//	  ca = ["a.crt", "b.crt"]                  # relative to the host directory
//	  client = [["cert.pem", "key.pem"]]
//	  override_path = false
//	  dial_timeout = "5s"
//	  [host."http://127.0.0.1:5000".header]
//	    X-Mirror = "yes"
//
// A host directory without hosts.toml is read the way Docker reads
// certs.d: *.crt files are CAs, *.cert files client certificates with the
// matching *.key.
package hosts

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Capabilities a host can have, as written in hosts.toml.
const (
	CapabilityPull    = "pull"
	CapabilityResolve = "resolve"
	CapabilityPush    = "push"
)

// Endpoint is one place to contact for a registry host.
type Endpoint struct {
	// Host is host[:port] to contact, e.g. "127.0.0.1:5000".
	Host string
	// Insecure means plain http.
	Insecure bool
	// PathPrefix is the URL path before the API root: the API is at
	// PathPrefix+"/v2" ("" normally), or at PathPrefix itself when
	// OverridePath is set.
	PathPrefix   string
	OverridePath bool
	// Capabilities are "pull", "resolve" and/or "push".
	Capabilities []string
	// Transport carries the endpoint's TLS settings (ca, client,
	// skip_verify), dial timeout and configured headers. Never nil.
	Transport http.RoundTripper

	header http.Header
}

// Headers returns the extra headers configured for the endpoint (may be
// nil). Transport already sends them; this is for callers that build their
// own requests or want to show the configuration.
func (e Endpoint) Headers() http.Header { return e.header.Clone() }

// Can reports whether the endpoint has the capability c.
func (e Endpoint) Can(c string) bool {
	for _, have := range e.Capabilities {
		if have == c {
			return true
		}
	}
	return false
}

// Resolve returns the endpoints for host (as in an image reference) in the
// order to try them: the [host."..."] entries of its hosts.toml in file
// order, then its server (by default the host itself; registry-1.docker.io
// for docker.io). With an empty dir, or no directory for the host and no
// _default, the only endpoint is the default server.
func Resolve(dir, host string) ([]Endpoint, error) {
	if host == "" || host == "." || host == ".." || strings.ContainsAny(host, `/\`) {
		return nil, fmt.Errorf("resolve registry host %q: %w: not a host name", host, errdefs.ErrInvalidArgument)
	}
	var entries []entry
	if dir != "" {
		hostDir, err := findHostDir(dir, host)
		if err != nil {
			return nil, fmt.Errorf("resolve registry host %s: %w", host, err)
		}
		if hostDir != "" {
			entries, err = loadHostDir(hostDir)
			if err != nil {
				return nil, fmt.Errorf("resolve registry host %s: %w", host, err)
			}
		}
	}
	if entries == nil {
		entries = []entry{{}}
	}
	// The last entry is the server; without one configured it is the
	// registry the host name stands for.
	if last := &entries[len(entries)-1]; last.host == "" {
		defaultServer(host, last)
	}

	endpoints := make([]Endpoint, 0, len(entries))
	for _, e := range entries {
		ep, err := e.endpoint()
		if err != nil {
			return nil, fmt.Errorf("resolve registry host %s: endpoint %s: %w", host, e.host, err)
		}
		endpoints = append(endpoints, ep)
	}
	return endpoints, nil
}

// findHostDir returns the first existing directory among containerd's
// candidates for host, or "" when there is none.
func findHostDir(dir, host string) (string, error) {
	var candidates []string
	// containerd spells ":port" as "_port_" so that the directory name is
	// valid everywhere; the plain form is accepted too.
	if i := strings.LastIndex(host, ":"); i > 0 {
		candidates = append(candidates, filepath.Join(dir, host[:i]+"_"+host[i+1:]+"_"))
	}
	candidates = append(candidates, filepath.Join(dir, host), filepath.Join(dir, "_default"))
	for _, p := range candidates {
		fi, err := os.Stat(p)
		if err == nil && fi.IsDir() {
			return p, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find host directory: %w", err)
		}
	}
	return "", nil
}

// defaultServer fills in the upstream a host name stands for.
func defaultServer(host string, e *entry) {
	e.scheme = "https"
	e.host = host
	switch {
	case host == "docker.io":
		e.host = "registry-1.docker.io"
	case isLocalhost(host):
		// As containerd: a local registry on its own port speaks plain
		// http; on 443 (or no port) it is https without verification,
		// since nobody holds a certificate for 127.0.0.1 from a public CA.
		_, port, _ := net.SplitHostPort(host)
		if port == "" || port == "443" {
			if e.skipVerify == nil {
				skip := true
				e.skipVerify = &skip
			}
		} else {
			e.scheme = "http"
		}
	}
}

func isLocalhost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return ip != nil && ip.IsLoopback()
}

// entry is one parsed endpoint before its transport is built.
type entry struct {
	scheme       string
	host         string
	pathPrefix   string
	overridePath bool
	capabilities []string
	caFiles      []string
	clientPairs  [][2]string // cert, key ("" when the key is in the cert file)
	skipVerify   *bool
	dialTimeout  time.Duration
	header       http.Header
}

func (e entry) endpoint() (Endpoint, error) {
	tr, err := e.transport()
	if err != nil {
		return Endpoint{}, err
	}
	caps := e.capabilities
	if len(caps) == 0 {
		caps = []string{CapabilityPull, CapabilityResolve, CapabilityPush}
	}
	return Endpoint{
		Host:         e.host,
		Insecure:     e.scheme == "http",
		PathPrefix:   e.pathPrefix,
		OverridePath: e.overridePath,
		Capabilities: caps,
		Transport:    tr,
		header:       e.header,
	}, nil
}

func (e entry) transport() (http.RoundTripper, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if e.skipVerify != nil {
		cfg.InsecureSkipVerify = *e.skipVerify
	}
	if len(e.caFiles) > 0 {
		// Configured CAs add to the system's, as in containerd: a mirror
		// with a private CA must not break a server with a public one.
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		for _, f := range e.caFiles {
			pem, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("read ca: %w", classifyFileErr(err))
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("load ca %s: %w: no PEM certificate in it", f, errdefs.ErrInvalidArgument)
			}
		}
		cfg.RootCAs = pool
	}
	for _, pair := range e.clientPairs {
		certPEM, err := os.ReadFile(pair[0])
		if err != nil {
			return nil, fmt.Errorf("read client certificate: %w", classifyFileErr(err))
		}
		keyPEM := certPEM
		if pair[1] != "" {
			if keyPEM, err = os.ReadFile(pair[1]); err != nil {
				return nil, fmt.Errorf("read client key: %w", classifyFileErr(err))
			}
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("load client certificate %s: %w: %w", pair[0], errdefs.ErrInvalidArgument, err)
		}
		cfg.Certificates = append(cfg.Certificates, cert)
	}
	tr.TLSClientConfig = cfg
	if e.dialTimeout > 0 {
		tr.DialContext = (&net.Dialer{Timeout: e.dialTimeout, KeepAlive: 30 * time.Second}).DialContext
	}
	if len(e.header) == 0 {
		return tr, nil
	}
	return headerTransport{header: e.header, next: tr}, nil
}

// headerTransport adds the configured headers to requests that do not set
// them already, including token requests to the registry's auth server, as
// containerd does.
type headerTransport struct {
	header http.Header
	next   http.RoundTripper
}

func (t headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range t.header {
		if _, ok := r.Header[k]; !ok {
			r.Header[k] = v
		}
	}
	return t.next.RoundTrip(r)
}

func classifyFileErr(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return err
}

// splitServer parses a server or host URL; a missing scheme means https.
func splitServer(server string, overridePath bool, e *entry) error {
	if !strings.HasPrefix(server, "http://") && !strings.HasPrefix(server, "https://") {
		server = "https://" + server
	}
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("parse server %q: %w: %w", server, errdefs.ErrInvalidArgument, err)
	}
	if u.Host == "" {
		return fmt.Errorf("parse server %q: %w: no host", server, errdefs.ErrInvalidArgument)
	}
	e.scheme, e.host, e.overridePath = u.Scheme, u.Host, overridePath
	p := ""
	if u.Path != "" {
		p = path.Clean(u.Path)
	}
	if !overridePath {
		p = strings.TrimSuffix(p, "/v2")
	}
	if p == "/" {
		p = ""
	}
	e.pathPrefix = p
	return nil
}
