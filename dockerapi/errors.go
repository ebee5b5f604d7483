package dockerapi

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/containerd/errdefs"
)

// statusOf is the single mapping from an error class to docker's status code.
func statusOf(err error) int {
	switch {
	case errdefs.IsNotFound(err):
		return http.StatusNotFound
	case errdefs.IsInvalidArgument(err):
		return http.StatusBadRequest
	case errdefs.IsConflict(err), errdefs.IsAlreadyExists(err), errdefs.IsFailedPrecondition(err):
		return http.StatusConflict
	case errdefs.IsUnauthorized(err):
		return http.StatusUnauthorized
	case errdefs.IsPermissionDenied(err):
		return http.StatusForbidden
	case errdefs.IsNotImplemented(err):
		return http.StatusNotImplemented
	case errdefs.IsUnavailable(err):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// errorResponse is docker's error body.
type errorResponse struct {
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(statusOf(err))
	_ = json.NewEncoder(w).Encode(errorResponse{Message: err.Error()})
}

// writeJSON sends v. Once the status is sent an encoding failure can only be
// a client that went away, so there is nothing left to report.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func notImplemented(w http.ResponseWriter, r *http.Request) error {
	return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("%s %s: not implemented in berth yet", r.Method, r.URL.Path))
}

func pageNotFound(w http.ResponseWriter, r *http.Request) error {
	return errdefs.ErrNotFound.WithMessage("page not found")
}

func invalid(format string, args ...any) error {
	return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf(format, args...))
}

// noSuchImage gives a not-found error docker's wording ("No such image: x"),
// which scripts and users match on; other errors pass through.
func noSuchImage(name string, err error) error {
	if err != nil && errdefs.IsNotFound(err) {
		return errdefs.ErrNotFound.WithMessage("No such image: " + name)
	}
	return err
}
