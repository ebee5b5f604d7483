package dockerapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/berth-dev/berth/imagestore"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
)

// message is docker's progress message; "error" is the legacy copy of
// errorDetail.message that old clients still read.
type message struct {
	jsonstream.Message
	ErrorText string `json:"error,omitempty"`
}

// stream writes newline-delimited JSON messages. Headers go out with the
// first message so that an error before it still gets a status code.
type stream struct {
	mu      sync.Mutex
	w       http.ResponseWriter
	started bool
	// preamble, when set, goes out just before the first message.
	preamble *jsonstream.Message
}

func newStream(w http.ResponseWriter) *stream { return &stream{w: w} }

func (s *stream) send(m jsonstream.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeLocked(message{Message: m})
}

func (s *stream) writeLocked(m message) {
	if !s.started {
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
		s.started = true
		if s.preamble != nil {
			b, _ := json.Marshal(message{Message: *s.preamble})
			_, _ = s.w.Write(append(b, '\n'))
		}
	}
	b, _ := json.Marshal(m)
	_, _ = s.w.Write(append(b, '\n'))
	if f, ok := s.w.(http.Flusher); ok {
		f.Flush()
	}
}

// fail reports err: as the response status when nothing was sent yet (it is
// returned for the error adapter), else as a final message in the stream.
func (s *stream) fail(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		return err
	}
	s.writeLocked(message{
		Message:   jsonstream.Message{Error: &jsonstream.Error{Message: err.Error()}},
		ErrorText: err.Error(),
	})
	return nil
}

func (s *stream) progress(p imagestore.Progress) {
	m := jsonstream.Message{Status: p.Status, ID: p.ID}
	if p.Total > 0 || p.Current > 0 {
		m.Progress = &jsonstream.Progress{Current: p.Current, Total: p.Total}
	}
	s.send(m)
}

// registryAuth decodes the X-Registry-Auth header: base64url JSON of an
// AuthConfig. Docker clients pad inconsistently, so both forms are accepted.
func registryAuth(r *http.Request) (*imagestore.Auth, error) {
	h := r.Header.Get(registry.AuthHeader)
	if h == "" {
		return nil, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(h, "="))
	if err != nil {
		raw, err = base64.StdEncoding.DecodeString(h)
		if err != nil {
			return nil, invalid("decode %s header: %v", registry.AuthHeader, err)
		}
	}
	var ac registry.AuthConfig
	if err := json.Unmarshal(raw, &ac); err != nil {
		return nil, invalid("decode %s header: %v", registry.AuthHeader, err)
	}
	if ac == (registry.AuthConfig{}) {
		return nil, nil
	}
	return authOf(ac), nil
}

func authOf(ac registry.AuthConfig) *imagestore.Auth {
	return &imagestore.Auth{
		Username:      ac.Username,
		Password:      ac.Password,
		Auth:          ac.Auth,
		IdentityToken: ac.IdentityToken,
		RegistryToken: ac.RegistryToken,
	}
}
