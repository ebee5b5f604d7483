package dockerapi

import (
	"net/http"
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
	handle("/containers/", h(func(w http.ResponseWriter, r *http.Request) error {
		return notImplemented(w, r)
	}))
}
