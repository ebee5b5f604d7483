// Package dockerapi serves the Docker Engine-compatible REST API (the subset
// the berth CLI and the docker CLI use) over berthd's image store.
//
// Paths are served both unversioned and under /v{1.40..1.57}/, as dockerd
// does. Handlers return errors carrying a containerd/errdefs class; one
// adapter (writeError) turns the class into docker's status code and JSON
// body. Streaming endpoints (pull, push, load) send headers only when the
// first message is ready, so an error that happens before any progress still
// gets its status code, and later errors travel in the stream as docker's
// {"errorDetail":...,"error":...} messages.
package dockerapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/berth-dev/berth/engine"
	"github.com/berth-dev/berth/engine/events"
	"github.com/berth-dev/berth/engine/volume"
	"github.com/berth-dev/berth/imagestore"
)

// Options configure the API server.
type Options struct {
	// Root and StateDir are reported by /info.
	Root     string
	StateDir string
	// Version is Berth's version string.
	Version string
	// CgroupDriver is the runtime's cgroup driver ("cgroupfs" or
	// "systemd"), reported by /info.
	CgroupDriver string
	// LoggingDriver is the log driver a standalone container gets when it
	// names none (berthd's [logging] driver), reported by /info.
	LoggingDriver string
	// Builder serves POST /build and /build/prune; nil answers them with
	// NotImplemented.
	Builder Builder
	// Networks serves /networks; nil answers lookups 404 and the rest 501.
	Networks Networks
	// Engine serves the container endpoints; nil answers them 501.
	Engine *engine.Engine
	// Volumes serves the volume endpoints; nil answers them 501.
	Volumes *volume.Store
	// Events is the event bus GET /events streams and the image
	// endpoints publish to; nil answers /events 501.
	Events *events.Bus
	// Logger receives one line per request (failed ones at warn level,
	// with their error); nil logs nothing.
	Logger *slog.Logger
}

// Images is what the handlers need of the image store; *imagestore.Store
// implements it. A value that also has Login(ctx, server, Auth) error serves
// POST /auth.
type Images interface {
	Pull(ctx context.Context, ref string, opts imagestore.PullOptions) (*imagestore.Image, error)
	Push(ctx context.Context, ref string, opts imagestore.PushOptions) error
	Get(ctx context.Context, nameOrID string) (*imagestore.Image, error)
	List(ctx context.Context) ([]*imagestore.Image, error)
	Tag(ctx context.Context, source, target string) error
	Remove(ctx context.Context, nameOrID string, opts imagestore.RemoveOptions) (imagestore.Removed, error)
	Save(ctx context.Context, w io.Writer, refs []string, format imagestore.ArchiveFormat) error
	Load(ctx context.Context, r io.Reader) ([]*imagestore.Image, error)
}

// loginer validates credentials against a registry. It is optional (an
// Images without it answers /auth with NotImplemented); *imagestore.Store
// has it.
type loginer interface {
	Login(ctx context.Context, server string, auth imagestore.Auth) error
}

// New returns the API handler serving the image store.
func New(images *imagestore.Store, opts Options) http.Handler {
	return NewHandler(images, opts)
}

// NewHandler is New for any Images implementation (tests serve fakes).
func NewHandler(imgs Images, opts Options) http.Handler {
	s := &server{images: imgs, opts: opts, engine: opts.Engine, volumes: opts.Volumes, events: opts.Events}
	mux := http.NewServeMux()
	s.routes(mux)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return withLogging(log, withVersion(mux))
}

type server struct {
	images  Images
	opts    Options
	engine  *engine.Engine
	volumes *volume.Store
	events  *events.Bus
}

// handlerFunc is an http handler that reports failure by returning an error;
// adapt maps it to a response in the one place that does so.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func adapt(h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			noteError(r, err)
			writeError(w, err)
		}
	})
}

func (s *server) routes(mux *http.ServeMux) {
	handle := func(pattern string, h handlerFunc) { mux.Handle(pattern, adapt(h)) }

	handle("GET /_ping", s.ping)
	handle("HEAD /_ping", s.ping)
	handle("GET /version", s.version)
	handle("GET /info", s.info)
	handle("POST /auth", s.auth)

	handle("POST /images/create", s.imageCreate)
	handle("GET /images/json", s.imageList)
	handle("GET /images/get", s.imageSaveMany)
	handle("POST /images/load", s.imageLoad)
	// Image names contain slashes ("127.0.0.1:5000/berth/busybox:latest"),
	// so the name is everything between /images/ and the action suffix.
	handle("GET /images/{rest...}", s.imageGetSuffix)
	handle("POST /images/{rest...}", s.imagePostSuffix)
	handle("DELETE /images/{rest...}", s.imageRemove)

	handle("POST /build", s.build)
	handle("POST /build/prune", s.buildPrune)
	handle("GET /system/df", s.systemDF)

	s.containerRoutes(handle)
	s.volumeRoutes(handle)
	handle("GET /events", s.eventsHandler)

	// `docker inspect NAME` without --type asks for a container first and
	// gives up on any answer but 404; Berth has no plugins, so "no such
	// object" is the true answer to those lookups.
	if s.opts.Networks != nil {
		s.networkRoutes(handle)
	} else {
		handle("GET /networks/{rest...}", noSuchObject("network", ""))
	}
	handle("GET /plugins/{rest...}", noSuchObject("plugin", "/json"))

	// Endpoint families Berth will serve but does not yet: a clear 501
	// rather than docker's "page not found".
	for _, p := range []string{
		"/build/", "/networks", "/networks/",
		"/system/", "/commit",
		"/distribution/", "/session", "/grpc",
		"/swarm", "/swarm/", "/services", "/services/", "/nodes", "/nodes/",
		"/tasks", "/tasks/", "/secrets", "/secrets/", "/configs", "/configs/",
		"/plugins", "/plugins/",
	} {
		handle(p, notImplemented)
	}
	mux.Handle("/", adapt(pageNotFound))
}

// noSuchObject answers GET /<kind>s/{name}<suffix> with docker's 404 and
// anything else under that path with 501.
func noSuchObject(kind, suffix string) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		rest := r.PathValue("rest")
		name, ok := strings.CutSuffix(rest, suffix)
		if !ok || name == "" || strings.Contains(name, "/") || (suffix == "" && name == "json") {
			return notImplemented(w, r)
		}
		return errdefs.ErrNotFound.WithMessage(fmt.Sprintf("No such %s: %s", kind, name))
	}
}
