package builder

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// builtinSyntax matches the `# syntax=` values Berth serves with its own
// frontend: docker's dockerfile frontend, version 1 (any 1.x, labs or not,
// pinned by digest or not). Fetching a frontend image is BuildKit's way and
// cannot happen offline.
var builtinSyntax = regexp.MustCompile(`^(docker\.io/)?(docker/)?dockerfile(-upstream)?:1(\.[0-9]+){0,2}(-labs)?(@sha256:[0-9a-f]{64})?$`)

// dockerfile is a parsed Dockerfile.
type dockerfile struct {
	name     string
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	escape   rune
}

// lineError prefixes err with the Dockerfile's name and the first line of
// loc ("Dockerfile:7: ..."), and classifies it as a bad argument unless it
// already has a class.
func lineError(file string, loc []parser.Range, err error) error {
	if len(loc) > 0 {
		err = fmt.Errorf("%s:%d: %w", file, loc[0].Start.Line, err)
	}
	return classify(err)
}

// classify gives an error without an errdefs class the class
// InvalidArgument: what the Dockerfile asks cannot be done.
func classify(err error) error {
	for _, is := range []func(error) bool{errdefs.IsNotFound, errdefs.IsInvalidArgument, errdefs.IsNotImplemented,
		errdefs.IsUnavailable, errdefs.IsFailedPrecondition, errdefs.IsUnauthorized, errdefs.IsPermissionDenied,
		errdefs.IsCanceled, errdefs.IsDeadlineExceeded, errdefs.IsAlreadyExists, errdefs.IsConflict, errdefs.IsDataLoss, errdefs.IsInternal} {
		if is(err) {
			return err
		}
	}
	return classed{err, errdefs.ErrInvalidArgument}
}

// classed gives err a class without changing its message.
type classed struct {
	error
	class error
}

func (c classed) Unwrap() []error { return []error{c.error, c.class} }

// parseError turns an error of BuildKit's parser into one naming the
// Dockerfile and the line.
func parseError(file string, err error) error {
	var le *parser.LocationError
	msg := err.Error()
	// instructions.Parse says "dockerfile parse error on line N: ...";
	// keep its message and only add the file name.
	if m := parseLineRe.FindStringSubmatch(msg); m != nil {
		return classify(fmt.Errorf("%s:%s: %s", file, m[1], m[2]))
	}
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return classify(fmt.Errorf("%s:%d: %s", file, le.Locations[0][0].Start.Line, msg))
	}
	return classify(fmt.Errorf("%s: %s", file, msg))
}

var parseLineRe = regexp.MustCompile(`^dockerfile parse error on line ([0-9]+): (.*)$`)

// parseDockerfile parses b with BuildKit's parser and instructions
// packages.
func parseDockerfile(name string, b []byte) (*dockerfile, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, classify(fmt.Errorf("%s: the Dockerfile is empty", name))
	}
	if syntax, _, loc, ok := parser.DetectSyntax(b); ok {
		if !builtinSyntax.MatchString(syntax) {
			return nil, lineError(name, loc, fmt.Errorf("syntax=%s: only the built-in Dockerfile frontend (docker/dockerfile:1) is available, other frontend images cannot run here: %w", syntax, errdefs.ErrNotImplemented))
		}
	}
	res, err := parser.Parse(bytes.NewReader(b))
	if err != nil {
		return nil, parseError(name, err)
	}
	stages, metaArgs, err := instructions.Parse(res.AST, nil)
	if err != nil {
		return nil, parseError(name, err)
	}
	if len(stages) == 0 {
		return nil, classify(fmt.Errorf("%s: no FROM instruction: the Dockerfile has no stage to build", name))
	}
	return &dockerfile{name: name, stages: stages, metaArgs: metaArgs, escape: res.EscapeToken}, nil
}

// envList is an ordered KEY=value list where a later set replaces an
// earlier one; it is the environment variable expansion sees
// (shell.EnvGetter).
type envList []string

func (e envList) Get(key string) (string, bool) {
	for i := len(e) - 1; i >= 0; i-- {
		k, v, _ := strings.Cut(e[i], "=")
		if shell.EqualEnvKeys(k, key) {
			return v, true
		}
	}
	return "", false
}

func (e envList) Keys() []string {
	var keys []string
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	return keys
}

// set returns e with key set to value, in place of an earlier value.
func (e envList) set(key, value string) envList {
	out := make(envList, 0, len(e)+1)
	for _, kv := range e {
		k, _, _ := strings.Cut(kv, "=")
		if !shell.EqualEnvKeys(k, key) {
			out = append(out, kv)
		}
	}
	return append(out, key+"="+value)
}

// predefinedArgs are the ARGs that may be used without declaring them in
// a way that changes the image: proxies are passed to RUN but kept out of
// the history, as docker does.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// platform is an os/arch/variant triple.
type platform struct{ OS, Arch, Variant string }

func (p platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func parsePlatform(s string, def platform) (platform, error) {
	if s == "" {
		return def, nil
	}
	parts := strings.Split(strings.ToLower(s), "/")
	if len(parts) > 3 || parts[0] == "" {
		return platform{}, fmt.Errorf("invalid platform %q: want os[/arch[/variant]]: %w", s, errdefs.ErrInvalidArgument)
	}
	p := platform{OS: parts[0], Arch: def.Arch}
	if len(parts) > 1 {
		p.Arch = parts[1]
	}
	if len(parts) > 2 {
		p.Variant = parts[2]
	}
	switch p.Arch {
	case "x86_64", "x86-64":
		p.Arch = "amd64"
	case "aarch64":
		p.Arch, p.Variant = "arm64", strings.TrimPrefix(p.Variant, "v8")
	}
	return p, nil
}

// defaultArgs are BuildKit's automatic platform ARGs.
func defaultArgs(build, target platform, targetStage string) envList {
	return envList{
		"BUILDPLATFORM=" + build.String(), "BUILDOS=" + build.OS, "BUILDARCH=" + build.Arch, "BUILDVARIANT=" + build.Variant,
		"TARGETPLATFORM=" + target.String(), "TARGETOS=" + target.OS, "TARGETARCH=" + target.Arch, "TARGETVARIANT=" + target.Variant,
		"TARGETSTAGE=" + targetStage,
	}
}

// metaArgs evaluates the ARGs before the first FROM (the global scope):
// a --build-arg wins over the default, defaults may use earlier ones.
func metaArgs(df *dockerfile, lex *shell.Lex, args envList, buildArgs map[string]string) (envList, error) {
	for _, cmd := range df.metaArgs {
		for _, kv := range cmd.Args {
			if v, ok := buildArgs[kv.Key]; ok {
				args = args.set(kv.Key, v)
				continue
			}
			if kv.Value == nil {
				continue
			}
			v, _, err := lex.ProcessWord(*kv.Value, args)
			if err != nil {
				return nil, lineError(df.name, cmd.Location(), err)
			}
			args = args.set(kv.Key, v)
		}
	}
	return args, nil
}

// stageIndex finds a stage by name (case-insensitive) or by number.
func (df *dockerfile) stageIndex(name string) (int, bool) {
	if i, ok := instructions.HasStage(df.stages, name); ok {
		return i, true
	}
	if n, err := strconv.Atoi(name); err == nil && n >= 0 && n < len(df.stages) {
		return n, true
	}
	return -1, false
}
