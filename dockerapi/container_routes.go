package dockerapi

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"
)

// containerRoutes registers the container endpoints; without an engine
// every one of them answers 501.
func (s *server) containerRoutes(handle func(string, handlerFunc)) {
	if s.engine == nil {
		// `docker inspect NAME` without --type asks for a container first
		// and gives up on any answer but 404: without an engine, "no such
		// container" is the true answer.
		handle("GET /containers/{rest...}", noSuchObject("container", "/json"))
		handle("/containers/", notImplemented)
		return
	}
	// The endpoints on one container, "METHOD op" for each
	// "METHOD /containers/{name}/op" route ("METHOD " for the container
	// itself), for the fallback below.
	ops := map[string]bool{}
	handle = func(register func(string, handlerFunc)) func(string, handlerFunc) {
		return func(pattern string, f handlerFunc) {
			if method, path, ok := strings.Cut(pattern, " "); ok {
				if op, ok := strings.CutPrefix(path+"/", "/containers/{name}/"); ok {
					ops[method+" "+strings.TrimSuffix(op, "/")] = true
				}
			}
			register(pattern, f)
		}
	}(handle)
	handle("POST /containers/create", s.containerCreate)
	handle("GET /containers/json", s.containerList)
	handle("GET /containers/{name}/json", s.containerInspect)
	handle("POST /containers/{name}/start", s.containerStart)
	handle("POST /containers/{name}/stop", s.containerStop)
	handle("POST /containers/{name}/restart", s.containerRestart)
	handle("POST /containers/{name}/kill", s.containerKill)
	handle("POST /containers/{name}/pause", s.containerPause)
	handle("POST /containers/{name}/unpause", s.containerUnpause)
	handle("POST /containers/{name}/rename", s.containerRename)
	handle("POST /containers/{name}/resize", s.containerResize)
	handle("POST /containers/{name}/wait", s.containerWait)
	handle("POST /containers/{name}/attach", s.containerAttach)
	handle("GET /containers/{name}/logs", s.containerLogs)
	handle("DELETE /containers/{name}", s.containerRemove)
	handle("GET /containers/{name}/stats", s.containerStats)
	handle("GET /containers/{name}/top", s.containerTop)
	handle("POST /containers/{name}/update", s.containerUpdate)
	handle("GET /containers/{name}/changes", s.containerChanges)
	handle("GET /containers/{name}/export", s.containerExport)
	handle("HEAD /containers/{name}/archive", s.containerArchiveHead)
	handle("GET /containers/{name}/archive", s.containerArchiveGet)
	handle("PUT /containers/{name}/archive", s.containerArchivePut)
	handle("POST /containers/prune", s.containerPrune)
	s.execRoutes(handle)
	handle("/containers/", noSuchContainerPath(ops))
}

// noSuchContainerPath answers the container endpoints that the routes
// above cannot match because the name holds a slash (dockerd's routes take
// any name): no container is called so, hence docker's 404. `docker
// inspect 127.0.0.1:5000/app/web:1` asks for a container of that name first
// and falls back to the image only on a 404. ops are the registered
// endpoints on one container (see containerRoutes); anything else is a 501.
func noSuchContainerPath(ops map[string]bool) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		name := strings.TrimPrefix(r.URL.Path, "/containers/")
		if !ops[r.Method+" "] {
			i := strings.LastIndexByte(name, '/')
			if i <= 0 || !ops[r.Method+" "+name[i+1:]] {
				return notImplemented(w, r)
			}
			name = name[:i]
		}
		if name == "" {
			return notImplemented(w, r)
		}
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such container: %s", name))
	}
}
