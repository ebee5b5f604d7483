// Package client is the client side of Berth's builds, for `berth build`:
// it makes the build context from a directory as the docker CLI does
// (.dockerignore applied, the Dockerfile and .dockerignore always sent, a
// Dockerfile from outside the context added under a random name), sends it
// to POST /build (with build secrets, through Berth's multipart extension
// of that endpoint; without secrets, as the plain tar any docker daemon
// takes) and renders the classic output stream as build progress.
package client

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/docker/cli/cli/command/image/build"
	"github.com/moby/go-archive"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/registry"
)

// Berth's multipart extension of POST /build (see dockerapi/build.go).
const (
	secretPart  = "secret"
	contextPart = "context"
	// maxSecret is the largest secret berthd takes (BuildKit's limit).
	maxSecret = 500 << 10
)

// Options describe one `berth build`.
type Options struct {
	// ContextDir is the build context directory, or "-" for a tar (or a
	// lone Dockerfile) on Stdin.
	ContextDir string
	Stdin      io.Reader
	// Dockerfile is the -f path ("-" reads it from Stdin); empty is
	// <context>/Dockerfile.
	Dockerfile string
	Tags       []string
	// BuildArgs are KEY=VALUE, or KEY to take the value from the
	// environment.
	BuildArgs []string
	Labels    []string
	Target    string
	NoCache   bool
	Pull      bool
	Quiet     bool
	// Secrets are --secret specs: id=ID[,src=FILE|,env=VAR][,type=file|env].
	Secrets    []string
	Network    string
	Platform   string
	ExtraHosts []string
	ShmSize    int64
	// Auth are the credentials of docker's config, by registry.
	Auth map[string]registry.AuthConfig
	// Getenv reads the environment (os.Getenv when nil).
	Getenv func(string) string
}

// Secret is one parsed --secret.
type Secret struct {
	ID    string
	Value []byte
}

// ParseSecret reads a --secret spec as buildx does: id=ID plus src=FILE
// (or source=) or env=VAR; type=file|env says which when the value alone
// is given; with neither, the environment variable named ID.
func ParseSecret(spec string, getenv func(string) string) (Secret, error) {
	var id, typ, src, env string
	for _, f := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			return Secret{}, fmt.Errorf("--secret %q: %q is not key=value", spec, f)
		}
		switch strings.ToLower(k) {
		case "id":
			id = v
		case "type":
			typ = v
		case "src", "source":
			src = v
		case "env":
			env = v
		default:
			return Secret{}, fmt.Errorf("--secret %q: unknown key %q", spec, k)
		}
	}
	if id == "" {
		return Secret{}, fmt.Errorf("--secret %q: id is required", spec)
	}
	switch typ {
	case "", "file", "env":
	default:
		return Secret{}, fmt.Errorf("--secret %q: type %q is not file or env", spec, typ)
	}
	if typ == "env" && env == "" {
		env, src = src, ""
	}
	var v []byte
	switch {
	case src != "" && env != "":
		return Secret{}, fmt.Errorf("--secret %q: src and env are exclusive", spec)
	case src != "":
		b, err := os.ReadFile(src)
		if err != nil {
			return Secret{}, fmt.Errorf("--secret id=%s: %w", id, err)
		}
		v = b
	default:
		if env == "" {
			env = id
		}
		val := getenv(env)
		if val == "" {
			return Secret{}, fmt.Errorf("--secret id=%s: environment variable %s is not set (give src=FILE or env=VAR)", id, env)
		}
		v = []byte(val)
	}
	if len(v) > maxSecret {
		return Secret{}, fmt.Errorf("--secret id=%s: larger than %d bytes", id, maxSecret)
	}
	return Secret{ID: id, Value: v}, nil
}

// Context makes the build context tar and the Dockerfile's name in it.
func Context(o Options) (io.ReadCloser, string, error) {
	var dockerfileCtx io.ReadCloser
	if o.Dockerfile == "-" {
		if o.ContextDir == "-" {
			return nil, "", errors.New("invalid argument: can't use stdin for both build context and dockerfile")
		}
		dockerfileCtx = io.NopCloser(o.Stdin)
	}
	if o.ContextDir == "-" {
		rc, rel, err := build.GetContextFromReader(io.NopCloser(o.Stdin), o.Dockerfile)
		if err != nil {
			return nil, "", fmt.Errorf("unable to prepare context from STDIN: %w", err)
		}
		return rc, rel, nil
	}
	dir, rel, err := build.GetContextFromLocalDir(o.ContextDir, o.Dockerfile)
	if err != nil {
		return nil, "", fmt.Errorf("unable to prepare context: %w", err)
	}
	if strings.HasPrefix(rel, ".."+string(filepath.Separator)) && dockerfileCtx == nil {
		f, err := os.Open(o.Dockerfile)
		if err != nil {
			return nil, "", fmt.Errorf("unable to open Dockerfile: %w", err)
		}
		dockerfileCtx = f
	}
	excludes, err := build.ReadDockerignore(dir)
	if err != nil {
		return nil, "", err
	}
	if err := build.ValidateContextDirectory(dir, excludes); err != nil {
		return nil, "", fmt.Errorf("checking context: %w", err)
	}
	rel = filepath.ToSlash(rel)
	excludes = build.TrimBuildFilesFromExcludes(excludes, rel, o.Dockerfile == "-")
	rc, err := archive.TarWithOptions(dir, &archive.TarOptions{ExcludePatterns: excludes, ChownOpts: &archive.ChownOpts{UID: 0, GID: 0}})
	if err != nil {
		return nil, "", err
	}
	if dockerfileCtx != nil {
		defer dockerfileCtx.Close()
		return build.AddDockerfileToBuildContext(dockerfileCtx, rc)
	}
	return rc, rel, nil
}

// query builds POST /build's query.
func query(o Options, dockerfile string, getenv func(string) string) (url.Values, error) {
	q := url.Values{}
	q["t"] = o.Tags
	if dockerfile != "" {
		q.Set("dockerfile", dockerfile)
	}
	set := func(k string, b bool) {
		if b {
			q.Set(k, "1")
		}
	}
	set("nocache", o.NoCache)
	set("pull", o.Pull)
	set("q", o.Quiet)
	for k, v := range map[string]string{"target": o.Target, "networkmode": o.Network, "platform": o.Platform} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if o.ShmSize > 0 {
		q.Set("shmsize", strconv.FormatInt(o.ShmSize, 10))
	}
	q["extrahosts"] = o.ExtraHosts
	if len(o.BuildArgs) > 0 {
		// docker's rule: KEY alone takes the value from the environment,
		// and is sent without a value when it is not set there.
		args := map[string]*string{}
		for _, a := range o.BuildArgs {
			k, v, ok := strings.Cut(a, "=")
			if !ok {
				if ev := getenv(k); ev != "" {
					v, ok = ev, true
				}
			}
			if ok {
				args[k] = &v
			} else {
				args[k] = nil
			}
		}
		b, _ := json.Marshal(args)
		q.Set("buildargs", string(b))
	}
	if len(o.Labels) > 0 {
		labels := map[string]string{}
		for _, l := range o.Labels {
			k, v, _ := strings.Cut(l, "=")
			labels[k] = v
		}
		b, _ := json.Marshal(labels)
		q.Set("labels", string(b))
	}
	return q, nil
}

// Build runs a build on the daemon dial reaches, rendering its progress
// with p, and returns the image ID.
func Build(ctx context.Context, dial func(context.Context) (net.Conn, error), o Options, p *Progress) (string, error) {
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	var secrets []Secret
	for _, s := range o.Secrets {
		sec, err := ParseSecret(s, getenv)
		if err != nil {
			return "", err
		}
		secrets = append(secrets, sec)
	}
	defer func() {
		for _, s := range secrets {
			clear(s.Value)
		}
	}()
	ctxTar, dockerfile, err := Context(o)
	if err != nil {
		return "", err
	}
	defer ctxTar.Close()
	q, err := query(o, dockerfile, getenv)
	if err != nil {
		return "", err
	}
	body, contentType := io.Reader(ctxTar), "application/x-tar"
	if len(secrets) > 0 {
		pr, pw := io.Pipe()
		mw := multipart.NewWriter(pw)
		contentType = mw.FormDataContentType()
		go func() {
			pw.CloseWithError(writeMultipart(mw, secrets, ctxTar))
		}()
		body = pr
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://api.moby.localhost/build?"+q.Encode(), body)
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", contentType)
	if len(o.Auth) > 0 {
		b, _ := json.Marshal(o.Auth)
		req.Header.Set("X-Registry-Config", base64.URLEncoding.EncodeToString(b))
	}
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) }}}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		var e struct{ Message string }
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return "", fmt.Errorf("Error response from daemon: %s", e.Message)
		}
		return "", fmt.Errorf("build: the daemon answered %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	return p.Read(resp.Body)
}

func writeMultipart(mw *multipart.Writer, secrets []Secret, ctxTar io.Reader) error {
	for _, s := range secrets {
		w, err := mw.CreateFormFile(secretPart, s.ID)
		if err != nil {
			return err
		}
		if _, err := w.Write(s.Value); err != nil {
			return err
		}
	}
	w, err := mw.CreateFormFile(contextPart, "context.tar")
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, ctxTar); err != nil {
		return err
	}
	return mw.Close()
}

// decodeStream calls fn for each message of an NDJSON stream.
func decodeStream(r io.Reader, fn func(jsonstream.Message) error) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	for {
		var m struct {
			jsonstream.Message
			ErrorText string `json:"error"`
		}
		if err := dec.Decode(&m); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("read build output: %w", err)
		}
		if m.Error == nil && m.ErrorText != "" {
			m.Error = &jsonstream.Error{Message: m.ErrorText}
		}
		if err := fn(m.Message); err != nil {
			return err
		}
	}
}
