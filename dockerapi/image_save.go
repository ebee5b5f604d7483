package dockerapi

import (
	"net/http"

	"github.com/berth-dev/berth/imagestore"
)

// imageSaveMany is GET /images/get?names=a&names=b.
func (s *server) imageSaveMany(w http.ResponseWriter, r *http.Request) error {
	names := r.URL.Query()["names"]
	if len(names) == 0 {
		return invalid("save: no image names given")
	}
	return s.imageSave(w, r, names)
}

// imageSave streams a docker-archive tarball. Until the first byte the error
// adapter can still set a status; after it the only honest signal left is a
// cut connection, so the client sees a truncated tar rather than a valid one.
func (s *server) imageSave(w http.ResponseWriter, r *http.Request, names []string) error {
	lw := &lazyWriter{w: w, contentType: "application/x-tar"}
	err := s.images.Save(r.Context(), lw, names, imagestore.DockerArchive)
	if err != nil && lw.started {
		panic(http.ErrAbortHandler)
	}
	if err == nil && !lw.started {
		lw.start()
	}
	return err
}

// lazyWriter sends the headers with the first write.
type lazyWriter struct {
	w           http.ResponseWriter
	contentType string
	started     bool
}

func (l *lazyWriter) start() {
	l.w.Header().Set("Content-Type", l.contentType)
	l.w.WriteHeader(http.StatusOK)
	l.started = true
}

func (l *lazyWriter) Write(p []byte) (int, error) {
	if !l.started {
		l.start()
	}
	return l.w.Write(p)
}
