package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-dev/berth/imagestore/hosts"
)

// endpoint is one registry host to try for a reference.
type endpoint struct {
	hosts.Endpoint
	// upstream is the reference's own registry ("docker.io"): credentials
	// of the docker config are looked up for the endpoint host, and for
	// Docker Hub's upstream under its historical key.
	upstream string
}

// endpoints lists the hosts to try for named that have capability.
func (s *Store) endpoints(named reference.Named, capability string) ([]endpoint, error) {
	domain := reference.Domain(named)
	eps, err := hosts.Resolve(s.cfg.RegistryConfigDir, domain)
	if err != nil {
		return nil, fmt.Errorf("registry hosts for %s: %w", domain, err)
	}
	var out []endpoint
	for _, ep := range eps {
		if ep.Can(capability) {
			out = append(out, endpoint{Endpoint: ep, upstream: domain})
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("registry hosts for %s: %w: no host has capability %q", domain, errdefs.ErrFailedPrecondition, capability)
	}
	return out, nil
}

// repo is named's repository on this endpoint.
func (ep endpoint) repo(named reference.Named) (name.Repository, error) {
	var opts []name.Option
	if ep.Insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(ep.Host, opts...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("registry host %q: %w: %w", ep.Host, errdefs.ErrInvalidArgument, err)
	}
	return reg.Repo(reference.Path(named)), nil
}

// ref is named (tag or digest) on this endpoint.
func (ep endpoint) ref(named reference.Named) (name.Reference, error) {
	repo, err := ep.repo(named)
	if err != nil {
		return nil, err
	}
	if c, ok := named.(reference.Canonical); ok {
		return repo.Digest(c.Digest().String()), nil
	}
	if t, ok := named.(reference.Tagged); ok {
		return repo.Tag(t.Tag()), nil
	}
	return repo.Tag("latest"), nil
}

// options are the remote options for talking to this endpoint.
func (s *Store) remoteOptions(ctx context.Context, ep endpoint, auth *Auth) ([]remote.Option, error) {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(s.roundTripper(ep)),
		// A dead registry should fail the pull in seconds, not after
		// ggcr's default 1s/3s/9s backoff.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}),
		remote.WithUserAgent("berth"),
	}
	a, err := s.authenticator(ctx, ep, auth)
	if err != nil {
		return nil, err
	}
	return append(opts, remote.WithAuth(a)), nil
}

// roundTripper is the HTTP transport for ep: its TLS and headers, its path
// prefix, and the stall timeout.
func (s *Store) roundTripper(ep endpoint) http.RoundTripper {
	var rt http.RoundTripper = ep.Transport
	if rt == nil {
		rt = http.DefaultTransport
	}
	if ep.PathPrefix != "" {
		rt = prefixTransport{next: rt, prefix: ep.PathPrefix, override: ep.OverridePath}
	}
	return stallTransport{next: rt, timeout: s.cfg.StallTimeout, host: ep.Host}
}

// authenticator gives the request's credentials, else the docker config's.
func (s *Store) authenticator(ctx context.Context, ep endpoint, auth *Auth) (authn.Authenticator, error) {
	if auth != nil && *auth != (Auth{}) {
		return authn.FromConfig(authn.AuthConfig{
			Username: auth.Username, Password: auth.Password, Auth: auth.Auth,
			IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken,
		}), nil
	}
	return s.configAuth(ctx, ep)
}

// configAuth reads credentials for ep from the docker config file.
func (s *Store) configAuth(ctx context.Context, ep endpoint) (authn.Authenticator, error) {
	key := ep.Host
	if ep.upstream == "docker.io" && (ep.Host == "registry-1.docker.io" || ep.Host == "docker.io" || ep.Host == "index.docker.io") {
		key = authn.DefaultAuthKey
	}
	if s.cfg.DockerConfig == "" {
		reg, err := name.NewRegistry(ep.Host)
		if err != nil {
			return authn.Anonymous, nil
		}
		if key == authn.DefaultAuthKey {
			reg, _ = name.NewRegistry(name.DefaultRegistry)
		}
		a, err := authn.Resolve(ctx, authn.DefaultKeychain, reg)
		if err != nil {
			return nil, fmt.Errorf("read docker config: %w", err)
		}
		return a, nil
	}
	f, err := os.Open(s.cfg.DockerConfig)
	if errors.Is(err, os.ErrNotExist) {
		return authn.Anonymous, nil
	} else if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	defer f.Close()
	cf, err := config.LoadFromReader(f)
	if err != nil {
		return nil, fmt.Errorf("read docker config %s: %w: %w", s.cfg.DockerConfig, errdefs.ErrInvalidArgument, err)
	}
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return nil, fmt.Errorf("read docker config %s: %w", s.cfg.DockerConfig, err)
	}
	if ac.Username == "" && ac.Password == "" && ac.Auth == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return authn.Anonymous, nil
	}
	return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth, IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
}

// prefixTransport serves registries that live under a path (hosts.toml
// "https://host/path"): ggcr always asks for /v2/....
type prefixTransport struct {
	next     http.RoundTripper
	prefix   string
	override bool
}

func (t prefixTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	r := req.Clone(req.Context())
	p := strings.TrimSuffix(t.prefix, "/")
	if t.override {
		r.URL.Path = p + strings.TrimPrefix(r.URL.Path, "/v2")
	} else {
		r.URL.Path = p + r.URL.Path
	}
	r.URL.RawPath = ""
	return t.next.RoundTrip(r)
}

// errStalled is the cancellation cause of a request that received nothing
// for the stall timeout.
var errStalled = errors.New("transfer stalled")

// stallTransport fails a request, or the reading of its body, when no byte
// arrives for timeout; every byte received rearms the timer.
type stallTransport struct {
	next    http.RoundTripper
	timeout time.Duration
	host    string
}

func (t stallTransport) stallErr() error {
	return fmt.Errorf("registry %s sent no data for %s: %w: %w", t.host, t.timeout, errdefs.ErrUnavailable, context.DeadlineExceeded)
}

func (t stallTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ctx, cancel := context.WithCancelCause(req.Context())
	timer := time.AfterFunc(t.timeout, func() { cancel(errStalled) })
	r := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		// An upload is progress too: bytes sent rearm the timer.
		r.Body = &rearmBody{ReadCloser: req.Body, timer: timer, timeout: t.timeout}
	}
	resp, err := t.next.RoundTrip(r)
	if err != nil {
		timer.Stop()
		stalled := context.Cause(ctx) == errStalled
		cancel(nil)
		if stalled {
			return nil, t.stallErr()
		}
		return nil, err
	}
	timer.Reset(t.timeout)
	resp.Body = &stallBody{rc: resp.Body, t: t, timer: timer, ctx: ctx, cancel: cancel}
	return resp, nil
}

type rearmBody struct {
	io.ReadCloser
	timer   *time.Timer
	timeout time.Duration
}

func (b *rearmBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.timer.Reset(b.timeout)
	}
	return n, err
}

type stallBody struct {
	rc     io.ReadCloser
	t      stallTransport
	timer  *time.Timer
	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
}

func (b *stallBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.timer.Reset(b.t.timeout)
	}
	if err != nil && err != io.EOF && context.Cause(b.ctx) == errStalled {
		return n, b.t.stallErr()
	}
	return n, err
}

func (b *stallBody) Close() error {
	b.once.Do(func() { b.timer.Stop() })
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// classifyRemote gives a registry error its errdefs class.
func classifyRemote(err error) error {
	if err == nil || errdefs.IsUnavailable(err) || errdefs.IsNotFound(err) || errdefs.IsInvalidArgument(err) ||
		errdefs.IsUnauthorized(err) || errdefs.IsPermissionDenied(err) || errdefs.IsDataLoss(err) || errdefs.IsCanceled(err) || errors.Is(err, context.Canceled) {
		return err
	}
	// ggcr's verify package reports a digest mismatch as a bare error.
	if strings.Contains(err.Error(), "error verifying") {
		return fmt.Errorf("%w: %w", errdefs.ErrDataLoss, err)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized:
			return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
		case http.StatusForbidden:
			return fmt.Errorf("%w: %w", errdefs.ErrPermissionDenied, err)
		case http.StatusNotFound:
			return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
		case http.StatusBadRequest:
			return fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
		}
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.BlobUnknownErrorCode, transport.NameUnknownErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
			case transport.UnauthorizedErrorCode:
				return fmt.Errorf("%w: %w", errdefs.ErrUnauthenticated, err)
			}
		}
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
}
