package dockerapi

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
)

const (
	// minAPIVersion and maxAPIVersion bound the API versions served; moby's
	// client v0.6.3 speaks 1.40 to 1.57.
	minAPIVersion = "1.40"
	maxAPIVersion = "1.57"
)

var versionPrefix = regexp.MustCompile(`^/v([0-9]+\.[0-9]+)(/.*)$`)

// withVersion strips a /v{major.minor} prefix after checking it is a version
// served here, so that every route is registered once.
func withVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := versionPrefix.FindStringSubmatch(r.URL.Path)
		if m != nil {
			v := m[1]
			switch {
			case compareVersions(v, minAPIVersion) < 0:
				writeError(w, invalid("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, minAPIVersion))
				return
			case compareVersions(v, maxAPIVersion) > 0:
				writeError(w, invalid("client version %s is too new. Maximum supported API version is %s", v, maxAPIVersion))
				return
			}
			r2 := r.Clone(context.WithValue(r.Context(), versionKey{}, v))
			r2.URL.Path = m[2]
			r2.URL.RawPath = ""
			r = r2
		}
		next.ServeHTTP(w, r)
	})
}

type versionKey struct{}

// apiVersion is the request's API version: its path's, else the newest
// (as dockerd treats unversioned requests).
func apiVersion(r *http.Request) string {
	if v, ok := r.Context().Value(versionKey{}).(string); ok {
		return v
	}
	return maxAPIVersion
}

// versionBelow reports whether the request's API version is older than v.
func versionBelow(r *http.Request, v string) bool {
	return compareVersions(apiVersion(r), v) < 0
}

// compareVersions compares "major.minor" versions numerically.
func compareVersions(a, b string) int {
	pa, pb := strings.SplitN(a, ".", 2), strings.SplitN(b, ".", 2)
	for i := range 2 {
		x, _ := strconv.Atoi(pa[i])
		y, _ := strconv.Atoi(pb[i])
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
