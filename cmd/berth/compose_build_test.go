package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
)

func loadTestProject(t *testing.T, yaml string, env map[string]string) *types.Project {
	t.Helper()
	dir := t.TempDir()
	p, err := loader.LoadWithContext(t.Context(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(dir, "compose.yaml"), Content: []byte(yaml)}},
		Environment: env,
	}, func(o *loader.Options) { o.SetProjectName("shop", true) })
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const secretsProject = `
services:
  app:
    image: registry.example/shop/app:v2
    build:
      context: ./app
      dockerfile: build/Dockerfile.app
      target: final
      args:
        VERSION: "2"
        FROM_ENV:
        UNSET:
      labels:
        tier: front
      tags: [shop/app:extra]
      network: host
      extra_hosts: ["db=10.0.0.5"]
      shm_size: 64m
      no_cache: true
      secrets:
        - token
        - source: api_key
          target: apikey
    depends_on: [base]
  base:
    build:
      context: ./base
      secrets: [token]
  plain:
    build: ./plain
    depends_on: [app]
  web:
    image: nginx
secrets:
  token:
    file: ./token.txt
  api_key:
    environment: API_KEY
  ext:
    external: true
`

// TestServiceBuildOptions: compose's classic build options of a service
// as Berth's builder client takes them, plus the secrets.
func TestServiceBuildOptions(t *testing.T) {
	p := loadTestProject(t, secretsProject, map[string]string{"FROM_ENV": "env-value", "API_KEY": "k"})
	proxy := "http://proxy:3128"
	o, cleanup, err := serviceBuildOptions(p, p.Services["app"], composeBuildOptions{pull: true, args: []string{"EXTRA=1", "FROM_ENV", "NOPE"}}, map[string]*string{"HTTP_PROXY": &proxy})
	defer cleanup()
	if err != nil {
		t.Fatal(err)
	}
	dir := p.WorkingDir
	if o.ContextDir != filepath.Join(dir, "app") || o.Dockerfile != filepath.Join(dir, "app", "build", "Dockerfile.app") {
		t.Errorf("context %q, dockerfile %q", o.ContextDir, o.Dockerfile)
	}
	if !slices.Equal(o.Tags, []string{"shop/app:extra", "registry.example/shop/app:v2"}) {
		t.Errorf("tags %v", o.Tags)
	}
	if want := []string{"EXTRA=1", "FROM_ENV=env-value", "HTTP_PROXY=" + proxy, "VERSION=2"}; !slices.Equal(o.BuildArgs, want) {
		t.Errorf("build args %v, want %v", o.BuildArgs, want)
	}
	if want := []string{"tier=front", "com.docker.compose.image.builder=berth"}; !slices.Equal(o.Labels, want) {
		t.Errorf("labels %v", o.Labels)
	}
	if want := []string{"id=token,src=" + filepath.Join(dir, "token.txt"), "id=apikey,env=API_KEY"}; !slices.Equal(o.Secrets, want) {
		t.Errorf("secrets %v, want %v", o.Secrets, want)
	}
	if o.Target != "final" || o.Network != "host" || !o.NoCache || !o.Pull || o.ShmSize != 64<<20 || !slices.Equal(o.ExtraHosts, []string{"db:10.0.0.5"}) {
		t.Errorf("options %+v", o)
	}
	if o.Getenv("API_KEY") != "k" {
		t.Error("secrets from the environment come from the project's")
	}

	// The default image name, a Dockerfile given inline.
	base := p.Services["base"]
	base.Build.DockerfileInline = "FROM scratch\n"
	o, cleanup, err = serviceBuildOptions(p, base, composeBuildOptions{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(o.Dockerfile); err != nil || string(b) != "FROM scratch\n" || !slices.Equal(o.Tags, []string{"shop-base"}) {
		t.Errorf("inline Dockerfile %q (%v), tags %v", b, err, o.Tags)
	}
	cleanup()
	if _, err := os.Stat(o.Dockerfile); !os.IsNotExist(err) {
		t.Errorf("the inline Dockerfile is left: %v", err)
	}

	// What Berth's builder cannot do is refused, naming it.
	for _, c := range []struct {
		change func(*types.BuildConfig)
		want   string
	}{
		{func(b *types.BuildConfig) { b.SSH = types.SSHConfig{{ID: "default"}} }, "build.ssh"},
		{func(b *types.BuildConfig) { b.Platforms = []string{"linux/amd64", "linux/arm64"} }, "build.platforms"},
		{func(b *types.BuildConfig) { b.Secrets = []types.ServiceSecretConfig{{Source: "ext"}} }, `build secret "ext" is external`},
		{func(b *types.BuildConfig) { b.Secrets = []types.ServiceSecretConfig{{Source: "nosuch"}} }, `build secret "nosuch" is not defined`},
	} {
		s := p.Services["app"]
		b := *s.Build
		c.change(&b)
		s.Build = &b
		if _, _, err := serviceBuildOptions(p, s, composeBuildOptions{}, nil); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error with %q, got %v", c.want, err)
		}
	}
}

// TestSecretBuildSelection: which services berth builds itself for a
// command's selection.
func TestSecretBuildSelection(t *testing.T) {
	p := loadTestProject(t, secretsProject, nil)
	for _, c := range []struct {
		names        []string
		deps         bool
		secret, rest []string
	}{
		{nil, false, []string{"app", "base"}, []string{"plain"}},
		{[]string{"plain"}, false, nil, []string{"plain"}},
		{[]string{"plain"}, true, []string{"app", "base"}, []string{"plain"}},
		{[]string{"app"}, false, []string{"app"}, nil},
		{[]string{"web"}, true, nil, nil},
	} {
		sel, err := selectServices(p, c.names, c.deps)
		if err != nil {
			t.Fatal(err)
		}
		secret, rest := splitSecretBuilds(p, sel)
		if !slices.Equal(secret, c.secret) || !slices.Equal(rest, c.rest) {
			t.Errorf("%v deps=%v: berth builds %v, compose %v; want %v and %v", c.names, c.deps, secret, rest, c.secret, c.rest)
		}
	}
	if _, err := selectServices(p, []string{"nosuch"}, true); err == nil {
		t.Error("an unknown service is an error")
	}
}
