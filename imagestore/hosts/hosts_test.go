package hosts

import (
	"crypto/tls"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/internal/testutil"
)

// view is what a test compares of an Endpoint.
type view struct {
	Host         string
	Insecure     bool
	PathPrefix   string
	OverridePath bool
	Capabilities string
}

func viewOf(eps []Endpoint) []view {
	var out []view
	for _, e := range eps {
		out = append(out, view{e.Host, e.Insecure, e.PathPrefix, e.OverridePath, strings.Join(e.Capabilities, ",")})
	}
	return out
}

const all = "pull,resolve,push"

func TestResolve(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string // nil: no directory at all
		host  string
		want  []view
	}{
		{
			name: "no dir docker.io",
			host: "docker.io",
			want: []view{{"registry-1.docker.io", false, "", false, all}},
		},
		{
			name: "no dir other registry",
			host: "registry.k8s.io",
			want: []view{{"registry.k8s.io", false, "", false, all}},
		},
		{
			name: "no dir loopback with port is plain http",
			host: "127.0.0.1:5000",
			want: []view{{"127.0.0.1:5000", true, "", false, all}},
		},
		{
			name: "no dir localhost without port is https",
			host: "localhost",
			want: []view{{"localhost", false, "", false, all}},
		},
		{
			name:  "dir without this host",
			files: map[string]string{"quay.io/hosts.toml": `server = "https://mirror.example.com"`},
			host:  "docker.io",
			want:  []view{{"registry-1.docker.io", false, "", false, all}},
		},
		{
			name: "mirrors in file order then server",
			files: map[string]string{"docker.io/hosts.toml": `
server = "https://upstream.example.com"

[host."https://zz.example.com"]
  capabilities = ["pull", "resolve"]

[host."http://127.0.0.1:5000"]
  capabilities = ["pull"]
  [host."http://127.0.0.1:5000".header]
    X-A = "1"

[host."https://aa.example.com"]
`},
			host: "docker.io",
			want: []view{
				{"zz.example.com", false, "", false, "pull,resolve"},
				{"127.0.0.1:5000", true, "", false, "pull"},
				{"aa.example.com", false, "", false, all},
				{"upstream.example.com", false, "", false, all},
			},
		},
		{
			name: "no server falls back to the default upstream",
			files: map[string]string{"docker.io/hosts.toml": `
[host."http://mirror.local:5000"]
  capabilities = ["pull", "resolve"]
`},
			host: "docker.io",
			want: []view{
				{"mirror.local:5000", true, "", false, "pull,resolve"},
				{"registry-1.docker.io", false, "", false, all},
			},
		},
		{
			name:  "scheme-less server is https",
			files: map[string]string{"example.com/hosts.toml": `server = "registry.example.com:8443"`},
			host:  "example.com",
			want:  []view{{"registry.example.com:8443", false, "", false, all}},
		},
		{
			name: "paths",
			files: map[string]string{"example.com/hosts.toml": `
server = "https://example.com/v2"
[host."https://proxy.example.com/cache/"]
[host."https://art.example.com/api/docker/v2/remote"]
  override_path = true
[host."https://root.example.com/"]
`},
			host: "example.com",
			want: []view{
				{"proxy.example.com", false, "/cache", false, all},
				{"art.example.com", false, "/api/docker/v2/remote", true, all},
				{"root.example.com", false, "", false, all},
				{"example.com", false, "", false, all},
			},
		},
		{
			name: "containerd's _port_ directory name",
			files: map[string]string{"127.0.0.1_5000_/hosts.toml": `
[host."http://127.0.0.1:6000"]
`},
			host: "127.0.0.1:5000",
			want: []view{
				{"127.0.0.1:6000", true, "", false, all},
				{"127.0.0.1:5000", true, "", false, all},
			},
		},
		{
			name: "colon directory name",
			files: map[string]string{"127.0.0.1:5000/hosts.toml": `
server = "https://127.0.0.1:5000"
`},
			host: "127.0.0.1:5000",
			want: []view{{"127.0.0.1:5000", false, "", false, all}},
		},
		{
			name: "_default applies to hosts without a directory",
			files: map[string]string{
				"_default/hosts.toml": `[host."http://127.0.0.1:7000"]
  capabilities = ["pull", "resolve"]`,
				"quay.io/hosts.toml": `server = "https://quay-mirror.example.com"`,
			},
			host: "ghcr.io",
			want: []view{
				{"127.0.0.1:7000", true, "", false, "pull,resolve"},
				{"ghcr.io", false, "", false, all},
			},
		},
		{
			name: "own directory wins over _default",
			files: map[string]string{
				"_default/hosts.toml": `[host."http://127.0.0.1:7000"]`,
				"quay.io/hosts.toml":  `server = "https://quay-mirror.example.com"`,
			},
			host: "quay.io",
			want: []view{{"quay-mirror.example.com", false, "", false, all}},
		},
		{
			name:  "directory without hosts.toml",
			files: map[string]string{"quay.io/README": "certs would go here"},
			host:  "quay.io",
			want:  []view{{"quay.io", false, "", false, all}},
		},
		{
			name: "dotted keys count as host entries, in file order",
			files: map[string]string{"quay.io/hosts.toml": `
host."https://b.example.com".capabilities = ["pull"]
host."https://b.example.com".skip_verify = true
[host."https://a.example.com"]
`},
			host: "quay.io",
			want: []view{
				{"b.example.com", false, "", false, "pull"},
				{"a.example.com", false, "", false, all},
				{"quay.io", false, "", false, all},
			},
		},
		{
			name:  "capabilities are case-insensitive",
			files: map[string]string{"quay.io/hosts.toml": `capabilities = ["PULL", "Resolve"]`},
			host:  "quay.io",
			want:  []view{{"quay.io", false, "", false, "pull,resolve"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := ""
			if tt.files != nil {
				dir = t.TempDir()
				testutil.WriteFiles(t, dir, tt.files)
			}
			eps, err := Resolve(dir, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			if got := viewOf(eps); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Resolve(%q):\n got %+v\nwant %+v", tt.host, got, tt.want)
			}
			for i, e := range eps {
				if e.Transport == nil {
					t.Errorf("endpoint %d has a nil Transport", i)
				}
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		host  string
		is    func(error) bool
	}{
		{"path in host", nil, "../etc", errdefs.IsInvalidArgument},
		{"empty host", nil, "", errdefs.IsInvalidArgument},
		{"bad toml", map[string]string{"x.io/hosts.toml": `server = `}, "x.io", errdefs.IsInvalidArgument},
		{"unknown capability", map[string]string{"x.io/hosts.toml": `capabilities = ["fly"]`}, "x.io", errdefs.IsInvalidArgument},
		{"ca of wrong type", map[string]string{"x.io/hosts.toml": `ca = 3`}, "x.io", errdefs.IsInvalidArgument},
		{"missing ca file", map[string]string{"x.io/hosts.toml": `ca = "nope.crt"`}, "x.io", errdefs.IsNotFound},
		{"ca file without PEM", map[string]string{"x.io/hosts.toml": `ca = "bad.crt"`, "x.io/bad.crt": "garbage"}, "x.io", errdefs.IsInvalidArgument},
		{"bad client pair", map[string]string{"x.io/hosts.toml": `client = [["only-one"]]`}, "x.io", errdefs.IsInvalidArgument},
		{"bad dial timeout", map[string]string{"x.io/hosts.toml": `dial_timeout = "soon"`}, "x.io", errdefs.IsInvalidArgument},
		{"server without host", map[string]string{"x.io/hosts.toml": `server = "https://"`}, "x.io", errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			testutil.WriteFiles(t, dir, tt.files)
			_, err := Resolve(dir, tt.host)
			if err == nil || !tt.is(err) {
				t.Fatalf("got %v, want an error of the expected class", err)
			}
		})
	}
}

// tlsRegistry is an https server on 127.0.0.1 with httptest's self-signed
// certificate; its PEM is written to caFile.
func tlsRegistry(t *testing.T, caFile string) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "{}")
	}))
	t.Cleanup(srv.Close)
	if caFile != "" {
		certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
		if err := os.MkdirAll(filepath.Dir(caFile), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(caFile, certPEM, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return srv
}

func get(t *testing.T, ep Endpoint) error {
	t.Helper()
	scheme := "https"
	if ep.Insecure {
		scheme = "http"
	}
	resp, err := (&http.Client{Transport: ep.Transport}).Get(scheme + "://" + ep.Host + ep.PathPrefix + "/v2/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func TestTLSWithCustomCA(t *testing.T) {
	dir := t.TempDir()
	srv := tlsRegistry(t, filepath.Join(dir, "certs", "registry-ca.pem"))
	host := strings.TrimPrefix(srv.URL, "https://")

	tests := []struct {
		name    string
		toml    string
		wantErr bool
	}{
		{"ca relative to host dir", `server = "https://%s"
ca = "../certs/registry-ca.pem"`, false},
		{"ca list on a mirror", `[host."https://%s"]
  ca = ["` + filepath.Join(dir, "certs", "registry-ca.pem") + `"]`, false},
		{"no ca", `server = "https://%s"`, true},
		{"skip_verify", `server = "https://%s"
skip_verify = true`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testutil.WriteFiles(t, dir, map[string]string{"registry.test/hosts.toml": fmt.Sprintf(tt.toml, host)})
			eps, err := Resolve(dir, "registry.test")
			if err != nil {
				t.Fatal(err)
			}
			ep := eps[0]
			if ep.Host != host || ep.Insecure {
				t.Fatalf("first endpoint %+v, want https %s", ep, host)
			}
			err = get(t, ep)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("got %v, want a certificate verification error", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestDockerStyleCertsDir(t *testing.T) {
	dir := t.TempDir()
	srv := tlsRegistry(t, "")
	host := strings.TrimPrefix(srv.URL, "https://")
	// The registry's own host directory, Docker-style: a .crt, no hosts.toml.
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	testutil.WriteFiles(t, dir, map[string]string{hostDirName(host) + "/ca.crt": string(certPEM)})

	eps, err := Resolve(dir, host)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 {
		t.Fatalf("got %d endpoints, want 1", len(eps))
	}
	// Loopback with a port defaults to plain http; the certificates still
	// apply once https is chosen, which a user does with a server entry.
	ep := eps[0]
	ep.Insecure = false
	if err := get(t, ep); err != nil {
		t.Fatalf("https with the certs.d CA: %v", err)
	}
}

func hostDirName(host string) string {
	i := strings.LastIndex(host, ":")
	return host[:i] + "_" + host[i+1:] + "_"
}

func TestClientCertificate(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	certPEM, keyPEM := ca.issue(t, "berth-client")
	testutil.WriteFiles(t, dir, map[string]string{
		"registry.test/client.cert": string(certPEM),
		"registry.test/client.key":  string(keyPEM),
	})

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "berth-client" {
			http.Error(w, "who are you", http.StatusForbidden)
		}
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.pool()}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "https://")
	serverCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	for _, tt := range []struct {
		name    string
		toml    string
		wantErr bool
	}{
		{"cert and key pair", `server = "https://%s"
ca = "server.crt"
client = [["client.cert", "client.key"]]`, false},
		{"no client certificate", `server = "https://%s"
ca = "server.crt"`, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			testutil.WriteFiles(t, dir, map[string]string{
				"registry.test/hosts.toml": fmt.Sprintf(tt.toml, host),
				"registry.test/server.crt": string(serverCA),
			})
			eps, err := Resolve(dir, "registry.test")
			if err != nil {
				t.Fatal(err)
			}
			err = get(t, eps[0])
			if tt.wantErr != (err != nil) {
				t.Fatalf("got %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestHeaders(t *testing.T) {
	got := make(chan http.Header, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Header.Clone()
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")

	dir := t.TempDir()
	testutil.WriteFiles(t, dir, map[string]string{"registry.test/hosts.toml": fmt.Sprintf(`
[host."http://%s"]
  [host."http://%s".header]
    x-mirror-token = "abc"
    X-Multi = ["1", "2"]
`, host, host)})
	eps, err := Resolve(dir, "registry.test")
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{"X-Mirror-Token": {"abc"}, "X-Multi": {"1", "2"}}
	if h := eps[0].Headers(); !reflect.DeepEqual(h, want) {
		t.Errorf("Headers() = %v, want %v", h, want)
	}
	if h := eps[1].Headers(); h != nil {
		t.Errorf("server Headers() = %v, want nil", h)
	}
	if err := get(t, eps[0]); err != nil {
		t.Fatal(err)
	}
	sent := <-got
	for k, v := range want {
		if !reflect.DeepEqual(sent[k], v) {
			t.Errorf("request header %s = %v, want %v", k, sent[k], v)
		}
	}
}
