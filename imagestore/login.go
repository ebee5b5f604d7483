package imagestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/berth-dev/berth/imagestore/hosts"
)

// Login checks auth against the registry server names, as `docker login`
// does: the registry's /v2/ endpoint must accept the credentials (for a
// token registry, its token service must issue a token for them). server is
// a host ("127.0.0.1:5000", "docker.io") or a URL
// ("https://index.docker.io/v1/"). Hosts come from the hosts directory, the
// first that answers decides. Rejected credentials give an error wrapping
// errdefs.ErrUnauthenticated.
func (s *Store) Login(ctx context.Context, server string, auth Auth) error {
	domain, err := loginDomain(server)
	if err != nil {
		return err
	}
	named, err := reference.ParseNormalizedNamed(domain + "/login/probe")
	if err != nil {
		return fmt.Errorf("login %s: %w: %w", server, errdefs.ErrInvalidArgument, err)
	}
	eps, err := s.endpoints(named, hosts.CapabilityPull)
	if err != nil {
		return fmt.Errorf("login %s: %w", server, err)
	}
	var errs []error
	for _, ep := range eps {
		err := s.loginTo(ctx, ep, auth)
		if err == nil || errdefs.IsUnauthorized(err) || ctx.Err() != nil {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("login %s: %w", server, errors.Join(errs...))
}

func (s *Store) loginTo(ctx context.Context, ep endpoint, auth Auth) error {
	var opts []name.Option
	if ep.Insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(ep.Host, opts...)
	if err != nil {
		return fmt.Errorf("login %s: %w: %w", ep.Host, errdefs.ErrInvalidArgument, err)
	}
	a := authn.FromConfig(authn.AuthConfig{
		Username: auth.Username, Password: auth.Password, Auth: auth.Auth,
		IdentityToken: auth.IdentityToken, RegistryToken: auth.RegistryToken,
	})
	// With no scope, a token registry's token service checks the
	// credentials on its own; a basic-auth registry is checked by /v2/.
	rt, err := transport.NewWithContext(ctx, reg, a, s.roundTripper(ep), nil)
	if err != nil {
		return fmt.Errorf("login %s: %w", ep.Host, classifyRemote(err))
	}
	u := url.URL{Scheme: reg.Scheme(), Host: reg.RegistryStr(), Path: "/v2/"}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return fmt.Errorf("login %s: %w", ep.Host, err)
	}
	resp, err := (&http.Client{Transport: rt}).Do(req)
	if err != nil {
		return fmt.Errorf("login %s: %w", ep.Host, classifyRemote(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("login %s: %w: the registry refused the credentials (%s)", ep.Host, errdefs.ErrUnauthenticated, resp.Status)
	default:
		return fmt.Errorf("login %s: %w: GET /v2/ answered %s", ep.Host, errdefs.ErrUnavailable, resp.Status)
	}
}

// loginDomain turns what `docker login` sends as the server address into a
// registry domain: Docker Hub's historical URL is docker.io.
func loginDomain(server string) (string, error) {
	s := strings.TrimSpace(server)
	if s == "" {
		return "docker.io", nil
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("login %q: %w: not a registry address", server, errdefs.ErrInvalidArgument)
		}
		s = u.Host
	}
	s = strings.TrimSuffix(strings.SplitN(s, "/", 2)[0], "/")
	switch s {
	case "index.docker.io", "registry-1.docker.io", "docker.io":
		return "docker.io", nil
	}
	return s, nil
}
