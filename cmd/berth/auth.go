package main

import (
	"os"
	"path/filepath"
	"strings"

	"github.com/distribution/reference"
	"github.com/docker/cli/cli/config"
	"github.com/docker/cli/cli/config/configfile"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
)

// indexServer is the key docker uses for Docker Hub credentials.
const indexServer = "https://index.docker.io/v1/"

// configFile loads the docker config file ($DOCKER_CONFIG/config.json or
// ~/.docker/config.json) that docker login writes, so berth and docker share
// credentials.
func (c *cli) configFile() (*configfile.ConfigFile, error) {
	dir := c.getenv("DOCKER_CONFIG")
	if dir == "" {
		home := c.getenv("HOME")
		if home == "" {
			var err error
			if home, err = os.UserHomeDir(); err != nil {
				return nil, err
			}
		}
		dir = filepath.Join(home, ".docker")
	}
	return config.Load(dir)
}

// serverKey is the config.json key for a registry given as a login argument
// or as a reference's domain: Docker Hub's aliases become indexServer, other
// servers their host[:port].
func serverKey(server string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	s = strings.TrimSuffix(s, "/")
	if i := strings.Index(s, "/"); i >= 0 {
		s = s[:i]
	}
	switch s {
	case "", "docker.io", "index.docker.io", "registry-1.docker.io":
		return indexServer
	}
	return s
}

// encodedAuth is the X-Registry-Auth value for the registry of ref, from the
// config file; "" when there are no credentials for it.
func (c *cli) encodedAuth(ref string) (string, error) {
	n, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", err
	}
	cf, err := c.configFile()
	if err != nil {
		return "", err
	}
	key := serverKey(reference.Domain(n))
	ac, err := cf.GetAuthConfig(key)
	if err != nil {
		return "", err
	}
	if ac.Username == "" && ac.IdentityToken == "" && ac.RegistryToken == "" {
		return "", nil
	}
	return authconfig.Encode(registry.AuthConfig{
		Username:      ac.Username,
		Password:      ac.Password,
		ServerAddress: key,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	})
}
