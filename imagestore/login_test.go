package imagestore

import (
	"encoding/base64"
	"net/http"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestLogin(t *testing.T) {
	reg := newRegistry(t)
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	reg.setIntercept(func(w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("Authorization") == want {
			return false
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
		w.WriteHeader(http.StatusUnauthorized)
		return true
	})
	s := openStore(t, Config{DockerConfig: filepath.Join(t.TempDir(), "absent.json")})
	for _, server := range []string{reg.host, "http://" + reg.host + "/v2/"} {
		if err := s.Login(t.Context(), server, Auth{Username: "alice", Password: "s3cret"}); err != nil {
			t.Errorf("login %s with the right password: %v", server, err)
		}
	}
	err := s.Login(t.Context(), reg.host, Auth{Username: "alice", Password: "wrong"})
	if !errdefs.IsUnauthorized(err) {
		t.Errorf("login with a wrong password: %v; want unauthenticated", err)
	}
	if err := s.Login(t.Context(), reg.host, Auth{}); !errdefs.IsUnauthorized(err) {
		t.Errorf("login without credentials: %v; want unauthenticated", err)
	}
}

func TestLoginDomain(t *testing.T) {
	for in, want := range map[string]string{
		"":                             "docker.io",
		"https://index.docker.io/v1/":  "docker.io",
		"registry-1.docker.io":         "docker.io",
		"127.0.0.1:5000":               "127.0.0.1:5000",
		"http://127.0.0.1:5000/v2/":    "127.0.0.1:5000",
		"registry.example.test/mirror": "registry.example.test",
	} {
		got, err := loginDomain(in)
		if err != nil || got != want {
			t.Errorf("loginDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := loginDomain("https://"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("loginDomain(https://) = %v", err)
	}
}
