package dockerapi

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"

	"github.com/berth-dev/berth/builder"
	"github.com/berth-dev/berth/imagestore"
)

// Builder runs Dockerfile builds; *builder.Builder implements it. Without
// one, /build answers NotImplemented.
type Builder interface {
	Build(ctx context.Context, opts builder.Options) (*builder.Result, error)
	Prune(ctx context.Context, opts builder.PruneOptions) (builder.Pruned, error)
}

// Berth's extension of POST /build, for build secrets (which the classic
// API has no way to carry): the body is multipart/form-data instead of a
// tar. Parts named "secret" come first, one per secret, the secret's id in
// the part's filename and its value as the part's content; the part named
// "context" comes last and is the build context (a tar, compressed or not).
// Everything else (the query, X-Registry-Config) is as docker sends it.
// Secrets stay in berthd's memory; a stock client never sends multipart.
const (
	// BuildSecretPart names a secret part of a multipart build request.
	BuildSecretPart = "secret"
	// BuildContextPart names the context part.
	BuildContextPart = "context"
	// MaxBuildSecret is the largest secret accepted (BuildKit's limit).
	MaxBuildSecret = 500 << 10
	// maxBuildSecrets bounds the number of secrets in one request.
	maxBuildSecrets = 100
)

// buildRequest is a decoded POST /build.
type buildRequest struct {
	opts      builder.Options
	quiet     bool
	cacheFrom []string
}

func intParam(q map[string][]string, name string) (int64, error) {
	v := ""
	if len(q[name]) > 0 {
		v = q[name][0]
	}
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, invalid("build: %s=%q is not a number", name, v)
	}
	return n, nil
}

// decodeBuild reads the query and headers of POST /build.
func decodeBuild(r *http.Request) (*buildRequest, error) {
	q := r.URL.Query()
	br := &buildRequest{}
	o := &br.opts
	for _, t := range q["t"] {
		if _, err := reference.ParseNormalizedNamed(t); err != nil {
			return nil, invalid("invalid tag %q: invalid reference format", t)
		}
		o.Tags = append(o.Tags, t)
	}
	o.Dockerfile = q.Get("dockerfile")
	o.Target = q.Get("target")
	o.Platform = q.Get("platform")
	o.Network = q.Get("networkmode")
	o.ExtraHosts = q["extrahosts"]
	var err error
	for _, p := range []struct {
		name string
		dst  *bool
	}{{"nocache", &o.NoCache}, {"pull", &o.Pull}, {"q", &br.quiet}} {
		if *p.dst, err = boolParam(r, p.name); err != nil {
			return nil, err
		}
	}
	// rm and forcerm: build containers are always removed.
	for _, name := range []string{"rm", "forcerm"} {
		if _, err := boolParam(r, name); err != nil {
			return nil, err
		}
	}
	if squash, err := boolParam(r, "squash"); err != nil {
		return nil, err
	} else if squash {
		return nil, errdefs.ErrNotImplemented.WithMessage("build: squash is not supported by Berth's builder (a multi-stage build with COPY --from gives the same single layer)")
	}
	switch v := q.Get("version"); v {
	case "", string(build.BuilderV1):
	case string(build.BuilderBuildKit):
		return nil, errdefs.ErrNotImplemented.WithMessage("build: BuildKit sessions (version=2) are not served: use the classic builder (DOCKER_BUILDKIT=0) or berth build")
	default:
		return nil, invalid("build: unknown builder version %q", v)
	}
	for _, name := range []string{"session", "remote", "outputs", "cgroupparent", "ulimits"} {
		if v := q.Get(name); v != "" && v != "null" && v != "[]" {
			return nil, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("build: %s=%s is not supported by Berth's builder", name, v))
		}
	}
	if v := q.Get("isolation"); v != "" && v != "default" {
		return nil, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("build: isolation %q: only the default isolation exists on Linux", v))
	}
	if so := q["securityopt"]; len(so) > 0 {
		return nil, errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("build: security options %v are not supported by Berth's builder", so))
	}
	if v := q.Get("buildargs"); v != "" {
		if err := json.Unmarshal([]byte(v), &o.BuildArgs); err != nil {
			return nil, invalid("build: buildargs: %v", err)
		}
	}
	if v := q.Get("labels"); v != "" {
		if err := json.Unmarshal([]byte(v), &o.Labels); err != nil {
			return nil, invalid("build: labels: %v", err)
		}
	}
	if v := q.Get("cachefrom"); v != "" {
		if err := json.Unmarshal([]byte(v), &br.cacheFrom); err != nil {
			return nil, invalid("build: cachefrom: %v", err)
		}
	}
	res := &o.Resources
	for _, p := range []struct {
		name string
		dst  *int64
	}{{"memory", &res.Memory}, {"memswap", &res.MemorySwap}, {"cpushares", &res.CPUShares},
		{"cpuquota", &res.CPUQuota}, {"cpuperiod", &res.CPUPeriod}, {"shmsize", &o.ShmSize}} {
		if *p.dst, err = intParam(q, p.name); err != nil {
			return nil, err
		}
	}
	res.CpusetCpus, res.CpusetMems = q.Get("cpusetcpus"), q.Get("cpusetmems")
	if o.Auth, err = registryConfig(r); err != nil {
		return nil, err
	}
	return br, nil
}

// registryConfig decodes X-Registry-Config: base64 JSON of registry
// host -> AuthConfig.
func registryConfig(r *http.Request) (map[string]imagestore.Auth, error) {
	h := r.Header.Get("X-Registry-Config")
	if h == "" {
		return nil, nil
	}
	raw, err := base64.URLEncoding.DecodeString(h)
	if err != nil {
		if raw, err = base64.StdEncoding.DecodeString(h); err != nil {
			return nil, invalid("decode X-Registry-Config header: %v", err)
		}
	}
	var acs map[string]registry.AuthConfig
	if err := json.Unmarshal(raw, &acs); err != nil {
		return nil, invalid("decode X-Registry-Config header: %v", err)
	}
	out := map[string]imagestore.Auth{}
	for host, ac := range acs {
		if ac == (registry.AuthConfig{}) {
			continue
		}
		out[host] = *authOf(ac)
	}
	return out, nil
}

// buildBody returns the build context of the request and, with Berth's
// multipart extension, its secrets.
func buildBody(r *http.Request) (io.Reader, map[string][]byte, error) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		return r.Body, nil, nil
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	secrets := map[string][]byte{}
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return nil, nil, invalid("build: multipart request without a %q part", BuildContextPart)
		}
		if err != nil {
			return nil, nil, invalid("build: read multipart request: %v", err)
		}
		switch p.FormName() {
		case BuildSecretPart:
			id := p.FileName()
			if id == "" {
				return nil, nil, invalid("build: a secret part without an id (its filename)")
			}
			if len(secrets) >= maxBuildSecrets {
				return nil, nil, invalid("build: more than %d secrets", maxBuildSecrets)
			}
			v, err := io.ReadAll(io.LimitReader(p, MaxBuildSecret+1))
			if err != nil {
				return nil, nil, invalid("build: read secret %s: %v", id, err)
			}
			if len(v) > MaxBuildSecret {
				return nil, nil, invalid("build: secret %s is larger than %d bytes", id, MaxBuildSecret)
			}
			secrets[id] = v
		case BuildContextPart:
			return p, secrets, nil
		default:
			return nil, nil, invalid("build: unknown part %q in a multipart request", p.FormName())
		}
	}
}

// build is POST /build: docker's classic builder API, served by Berth's
// builder. Progress goes out as docker's classic output in
// {"stream":...} messages, the image ID as {"aux":{"ID":...}}; with q=1
// only the image ID, as one stream line.
func (s *server) build(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Builder == nil {
		return errdefs.ErrNotImplemented.WithMessage("build: no builder in this berthd")
	}
	req, err := decodeBuild(r)
	if err != nil {
		return err
	}
	body, secrets, err := buildBody(r)
	if err != nil {
		return err
	}
	defer func() {
		for _, v := range secrets {
			clear(v)
		}
	}()
	opts := req.opts
	opts.Context = bufio.NewReaderSize(body, 256<<10)
	opts.Secrets = secrets
	out := newStream(w)
	text := func(format string, args ...any) {
		if !req.quiet {
			out.send(jsonstream.Message{Stream: fmt.Sprintf(format, args...)})
		}
	}
	opts.Progress = func(e builder.Event) {
		switch e.Kind {
		case builder.EventStep:
			text("Step %d/%d : %s\n", e.Step, e.Total, e.Instruction)
		case builder.EventCached:
			text(" ---> Using cache\n")
		case builder.EventRunning:
			text(" ---> Running in %s\n", shortID(e.ID))
		case builder.EventOutput:
			text("%s", e.Text)
		case builder.EventRemoved:
			text("Removing intermediate container %s\n", shortID(e.ID))
		case builder.EventStepDone:
			text(" ---> %s\n", shortID(e.ID))
		case builder.EventInfo:
			text("%s\n", e.Text)
		case builder.EventPull:
			if !req.quiet {
				out.progress(e.Pull)
			}
		}
	}
	if len(req.cacheFrom) > 0 {
		// Said by the builder once it has read the context: the request
		// body may not be read once the response has started.
		opts.Warnings = append(opts.Warnings, fmt.Sprintf("cache-from %v is not used: Berth's build cache is keyed by content and kept by berthd, not taken from images", req.cacheFrom))
	}
	res, err := s.opts.Builder.Build(r.Context(), opts)
	if err != nil {
		return out.fail(err)
	}
	id := res.Image.ID.String()
	if req.quiet {
		out.send(jsonstream.Message{Stream: id + "\n"})
		return nil
	}
	aux, _ := json.Marshal(build.Result{ID: id})
	raw := json.RawMessage(aux)
	out.send(jsonstream.Message{Aux: &raw})
	text("Successfully built %s\n", shortID(id))
	for _, t := range res.Tags {
		if named, err := reference.ParseNormalizedNamed(t); err == nil {
			t = reference.FamiliarString(named)
		}
		text("Successfully tagged %s\n", t)
	}
	return nil
}

// shortID is docker's 12-hex short form of an ID.
func shortID(id string) string {
	id = strings.TrimPrefix(id, "sha256:")
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// buildPrune is POST /build/prune (docker builder prune, and docker system
// prune): the build cache's records, the layers only they keep, and the
// cache mounts. Filters: until (a duration or a time); label filters match
// nothing, since cache entries carry no labels.
func (s *server) buildPrune(w http.ResponseWriter, r *http.Request) error {
	if s.opts.Builder == nil {
		return errdefs.ErrNotImplemented.WithMessage("build cache prune: no builder in this berthd")
	}
	q := r.URL.Query()
	var opts builder.PruneOptions
	if v := q.Get("filters"); v != "" {
		filters := map[string]map[string]bool{}
		if err := json.Unmarshal([]byte(v), &filters); err != nil {
			var legacy map[string][]string
			if lerr := json.Unmarshal([]byte(v), &legacy); lerr != nil {
				return invalid("build cache prune: filters: %v", err)
			}
			for k, vs := range legacy {
				filters[k] = map[string]bool{}
				for _, x := range vs {
					filters[k][x] = true
				}
			}
		}
		for k, vs := range filters {
			switch k {
			case "until", "unused-for":
				for v := range vs {
					t, err := untilTime(v)
					if err != nil {
						return err
					}
					opts.Until = t
				}
			case "label", "label!":
				// Entries have no labels: "label=x" matches none of them.
				if k == "label" && len(vs) > 0 {
					writeJSON(w, http.StatusOK, build.CachePruneReport{CachesDeleted: []string{}})
					return nil
				}
			default:
				return invalid("build cache prune: filter %q is not supported", k)
			}
		}
	}
	for _, name := range []string{"keep-storage", "reserved-space", "max-used-space", "min-free-space"} {
		if v := q.Get(name); v != "" && v != "0" {
			return errdefs.ErrNotImplemented.WithMessage(fmt.Sprintf("build cache prune: %s is not supported: the whole cache (or what --filter until selects) is pruned", name))
		}
	}
	res, err := s.opts.Builder.Prune(r.Context(), opts)
	if err != nil {
		return err
	}
	rep := build.CachePruneReport{CachesDeleted: res.Deleted, SpaceReclaimed: uint64(max(res.Reclaimed, 0))}
	if rep.CachesDeleted == nil {
		rep.CachesDeleted = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
	return nil
}

// untilTime reads an "until" filter: a duration back from now ("24h") or
// a time (RFC 3339 or Unix seconds).
func untilTime(v string) (time.Time, error) {
	if d, err := time.ParseDuration(v); err == nil {
		return time.Now().Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseFloat(v, 64); err == nil {
		return time.Unix(int64(n), 0), nil
	}
	return time.Time{}, invalid("build cache prune: until=%q is neither a duration nor a time", v)
}
