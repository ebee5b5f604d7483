package dockerapi

import (
	"fmt"
	"net/http"
	"slices"
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
	h := func(f handlerFunc) handlerFunc {
		if s.engine == nil {
			return notImplemented
		}
		return f
	}
	handle("POST /containers/create", h(s.containerCreate))
	handle("GET /containers/json", h(s.containerList))
	handle("GET /containers/{name}/json", h(s.containerInspect))
	handle("POST /containers/{name}/start", h(s.containerStart))
	handle("POST /containers/{name}/stop", h(s.containerStop))
	handle("POST /containers/{name}/restart", h(s.containerRestart))
	handle("POST /containers/{name}/kill", h(s.containerKill))
	handle("POST /containers/{name}/pause", h(s.containerPause))
	handle("POST /containers/{name}/unpause", h(s.containerUnpause))
	handle("POST /containers/{name}/rename", h(s.containerRename))
	handle("POST /containers/{name}/resize", h(s.containerResize))
	handle("POST /containers/{name}/wait", h(s.containerWait))
	handle("POST /containers/{name}/attach", h(s.containerAttach))
	handle("GET /containers/{name}/logs", h(s.containerLogs))
	handle("DELETE /containers/{name}", h(s.containerRemove))
	handle("GET /containers/{name}/stats", h(s.containerStats))
	handle("GET /containers/{name}/top", h(s.containerTop))
	handle("POST /containers/{name}/update", h(s.containerUpdate))
	handle("GET /containers/{name}/changes", h(s.containerChanges))
	handle("GET /containers/{name}/export", h(s.containerExport))
	handle("HEAD /containers/{name}/archive", h(s.containerArchiveHead))
	handle("GET /containers/{name}/archive", h(s.containerArchiveGet))
	handle("PUT /containers/{name}/archive", h(s.containerArchivePut))
	handle("POST /containers/prune", h(s.containerPrune))
	s.execRoutes(handle)
	handle("/containers/", h(noSuchContainerPath))
}

// containerOps are the endpoints under /containers/{name}/ by method.
var containerOps = map[string][]string{
	http.MethodGet:  {"json", "logs", "stats", "top", "changes", "export", "archive"},
	http.MethodHead: {"archive"},
	http.MethodPut:  {"archive"},
	http.MethodPost: {"start", "stop", "restart", "kill", "pause", "unpause", "rename", "resize", "wait", "attach", "update", "exec"},
}

// noSuchContainerPath answers the container endpoints that the routes
// above cannot match because the name holds a slash (dockerd's routes take
// any name): no container is called so, hence docker's 404. `docker
// inspect 127.0.0.1:5000/app/web:1` asks for a container of that name first
// and falls back to the image only on a 404. Anything else is a 501.
func noSuchContainerPath(w http.ResponseWriter, r *http.Request) error {
	rest := strings.TrimPrefix(r.URL.Path, "/containers/")
	name := rest
	if r.Method != http.MethodDelete {
		i := strings.LastIndexByte(rest, '/')
		if i <= 0 || !slices.Contains(containerOps[r.Method], rest[i+1:]) {
			return notImplemented(w, r)
		}
		name = rest[:i]
	}
	if name == "" {
		return notImplemented(w, r)
	}
	return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such container: %s", name))
}
