package dockerapi

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"

	"github.com/moby/moby/api/types/container"

	"github.com/berth-dev/berth/engine"
)

// pathStatHeader carries a path's stat, base64 JSON, in the archive
// responses.
const pathStatHeader = "X-Docker-Container-Path-Stat"

func setPathStat(w http.ResponseWriter, st container.PathStat) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	w.Header().Set(pathStatHeader, base64.StdEncoding.EncodeToString(b))
	return nil
}

func archivePath(r *http.Request) (string, error) {
	p := r.URL.Query().Get("path")
	if p == "" {
		return "", invalid("Path cannot be empty")
	}
	return p, nil
}

// containerArchiveHead is HEAD /containers/{name}/archive?path=: the
// path's stat in the header.
func (s *server) containerArchiveHead(w http.ResponseWriter, r *http.Request) error {
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	st, err := s.engine.ArchiveStat(r.Context(), r.PathValue("name"), p)
	if err != nil {
		return err
	}
	if err := setPathStat(w, st); err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}

// containerArchiveGet is GET /containers/{name}/archive?path=: the path
// as a tar, its stat in the header.
func (s *server) containerArchiveGet(w http.ResponseWriter, r *http.Request) error {
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	started := false
	err = s.engine.ArchiveGet(r.Context(), r.PathValue("name"), p, func(st container.PathStat) (io.Writer, error) {
		if err := setPathStat(w, st); err != nil {
			return nil, err
		}
		w.Header().Set("Content-Type", "application/x-tar")
		w.WriteHeader(http.StatusOK)
		started = true
		return w, nil
	})
	if err != nil && started {
		// A truncated tar must not look whole: cut the connection.
		noteError(r, err)
		panic(http.ErrAbortHandler)
	}
	return err
}

// containerArchivePut is PUT /containers/{name}/archive?path=: the body,
// a tar, is extracted into the directory path.
func (s *server) containerArchivePut(w http.ResponseWriter, r *http.Request) error {
	p, err := archivePath(r)
	if err != nil {
		return err
	}
	err = s.engine.ArchivePut(r.Context(), r.PathValue("name"), p, r.Body, engine.ArchivePutOptions{
		NoOverwriteDirNonDir: boolValue(r, "noOverwriteDirNonDir"),
		CopyUIDGID:           boolValue(r, "copyUIDGID"),
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusOK)
	return nil
}
