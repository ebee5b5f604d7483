package main

import (
	"os"

	cliflags "github.com/docker/cli/cli/flags"
	"github.com/spf13/pflag"
)

// Where berth connects. Berth and docker often live on the same machine,
// with DOCKER_HOST or a docker context pointing at a real dockerd; berth
// must not follow them there. So berth takes its daemon from, in order:
//
//  1. -H/--host;
//  2. --context NAME, a docker context named explicitly (an endpoint with
//     its TLS material, kept in docker's context store);
//  3. $BERTH_HOST;
//  4. unix:///run/berth/docker.sock.
//
// It ignores what selects docker's daemon implicitly: DOCKER_HOST,
// DOCKER_CONTEXT, the current context of config.json ("docker context use")
// and the DOCKER_TLS, DOCKER_TLS_VERIFY and DOCKER_CERT_PATH that go with
// DOCKER_HOST. The rest of ~/.docker (credentials, contexts, proxies,
// formats) is shared with docker, as $DOCKER_CONFIG or --config say.
const (
	defaultHost = "unix:///run/berth/docker.sock"
	envHost     = "BERTH_HOST"
)

// dockerSelectors are the environment variables by which docker picks its
// daemon. berth removes them from its own environment, so that no library
// it runs (compose, the context store) and no process it starts acts on
// them; compose hands berth's endpoint to what it starts itself.
var dockerSelectors = []string{"DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"}

// useBerthEndpoint points opts, parsed from the global flags, at berthd
// unless the command line names a host or a context.
func useBerthEndpoint(opts *cliflags.ClientOptions, flags *pflag.FlagSet, getenv func(string) string) {
	if len(opts.Hosts) == 0 && opts.Context == "" {
		host := getenv(envHost)
		if host == "" {
			host = defaultHost
		}
		opts.Hosts = []string{host}
	}
	// docker/cli read DOCKER_TLS and DOCKER_TLS_VERIFY into the flags'
	// defaults when it was loaded; only the flags themselves count here.
	if !flags.Changed("tls") {
		opts.TLS = false
	}
	if !flags.Changed(cliflags.FlagTLSVerify) {
		opts.TLSVerify = false
	}
}

func unsetDockerSelectors() {
	for _, k := range dockerSelectors {
		os.Unsetenv(k)
	}
}
