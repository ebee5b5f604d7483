package dockerapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// maxBody bounds a JSON request body (a create request is a few kB).
const maxBody = 8 << 20

// errEmptyBody is returned by decodeStrict for a request without a body.
var errEmptyBody = errors.New("empty request body")

// decodeStrict decodes r's JSON body into v strictly, with dockerd's
// messages: malformed JSON, a wrong type or an unknown field is
// "invalid JSON: ..." (400), content after the object too.
func decodeStrict(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errEmptyBody
		}
		return errdefs.ErrInvalidArgument.WithMessage("invalid JSON: " + err.Error())
	}
	if dec.More() {
		return errdefs.ErrInvalidArgument.WithMessage("unexpected content after JSON")
	}
	return nil
}

// boolValue reads a boolean query parameter as dockerd does: absent,
// empty, "0", "no", "false" and "none" (any case) are false, anything
// else true. docker-py sends "True" and "False".
func boolValue(r *http.Request, k string) bool {
	s := strings.ToLower(strings.TrimSpace(r.URL.Query().Get(k)))
	return !(s == "" || s == "0" || s == "no" || s == "false" || s == "none")
}

// boolValueOr is boolValue with a default for an absent parameter.
func boolValueOr(r *http.Request, k string, def bool) bool {
	if _, ok := r.URL.Query()[k]; !ok {
		return def
	}
	return boolValue(r, k)
}

// intValue reads an integer query parameter; absent or empty gives def.
func intValue(r *http.Request, k string, def int) (int, error) {
	s := strings.TrimSpace(r.URL.Query().Get(k))
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, invalid("invalid value for %s: %q: %v", k, s, err)
	}
	return n, nil
}

// optionalInt reads an integer query parameter, nil when absent.
func optionalInt(r *http.Request, k string) (*int, error) {
	if strings.TrimSpace(r.URL.Query().Get(k)) == "" {
		return nil, nil
	}
	n, err := intValue(r, k, 0)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

// contextUntil is ctx ending at t.
func contextUntil(ctx context.Context, t time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, t)
}

// randomHex returns n random bytes in hex (volume names).
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
