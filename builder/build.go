package builder

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/moby/patternmatcher"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/internal/logctx"
	"github.com/berth-dev/berth/internal/steps"
	"github.com/berth-dev/berth/runtime"
)

// cleanupTimeout bounds the cleanup of a build, which runs on a context the
// caller's cancellation cannot abort.
const cleanupTimeout = time.Minute

// stateTmpfsSize caps a build's tmpfs (secrets, RUN output being read,
// /etc files); tmpfs takes memory only for what is written.
const stateTmpfsSize = "512m"

// build is one running build.
type build struct {
	b    *Builder
	id   string
	opts Options

	dir string // <root>/tmp/<id>: context spool, mounts, downloads
	// ctxfs is the build context; ctxDir where it is written out when a
	// RUN bind-mounts it.
	ctxfs    *ctxFS
	ctxDir   string
	stateDir string // <state>/<id>: a tmpfs
	lease    *imagestore.Lease
	// sandbox is the build's network sandbox on the bridge (made by the
	// first RUN that needs it).
	sandboxOnce sync.Once
	sandbox     *runtime.Sandbox
	sandboxErr  error

	df     *dockerfile
	ignore *patternmatcher.PatternMatcher
	// escape is the Dockerfile's escape token: lexer() makes a shell.Lex
	// per use, as a Lex keeps its scratch buffer and stages run
	// concurrently.
	escape    rune
	global    envList
	buildArgs map[string]string
	usedArgs  map[string]bool
	host      platform
	target    platform
	network   string
	secrets   *secrets

	stages  []*stage
	printer *printer
	// tm times the build's phases (debug level; nil when off).
	tm *steps.Timer

	// mu guards what concurrent stages share below.
	mu sync.Mutex
	// entries are the cache entries made, recorded at the end; hits the
	// keys reused.
	entries []imagestore.CacheEntry
	hits    []digest.Digest
	seq     int
}

// stage is one FROM ... section.
type stage struct {
	index int
	def   *instructions.Stage
	// base is the expanded FROM name; baseStage its stage, or -1.
	base      string
	baseStage int
	platform  *platform
	deps      []int
	// state is the stage's result, set before done is closed.
	state *state
	done  chan struct{}
	// scheduled: the target needs the stage (done will close).
	scheduled bool
	name      string
}

func (s *stage) label() string {
	if s.def.Name != "" {
		return s.def.Name
	}
	return strconv.Itoa(s.index)
}

func (b *Builder) newBuild(ctx context.Context, id string, opts Options) (_ *build, retErr error) {
	bd := &build{
		b: b, id: id, opts: opts,
		dir:       filepath.Join(b.cfg.Root, "tmp", id),
		stateDir:  filepath.Join(b.cfg.StateDir, id),
		buildArgs: map[string]string{},
		usedArgs:  map[string]bool{},
		lease:     b.images.NewLease(),
		printer:   newPrinter(opts.Progress),
	}
	defer func() {
		if retErr != nil {
			bd.close(ctx)
		}
	}()
	bd.ctxDir = filepath.Join(bd.dir, "context")
	if err := os.MkdirAll(bd.dir, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if err := os.MkdirAll(bd.stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	// Secrets and RUN output live in memory only: a tmpfs of the build's
	// own, whatever file system the state dir is on.
	if err := unix.Mount("tmpfs", bd.stateDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0711,size="+stateTmpfsSize); err != nil {
		return nil, fmt.Errorf("build: mount tmpfs on %s: %w", bd.stateDir, err)
	}
	bd.secrets = newSecrets(opts.Secrets, filepath.Join(bd.stateDir, "secrets"))
	for k, v := range opts.BuildArgs {
		if v != nil {
			bd.buildArgs[k] = *v
		}
	}
	bd.host = platform{OS: "linux", Arch: goruntime.GOARCH}
	var err error
	if bd.target, err = parsePlatform(opts.Platform, bd.host); err != nil {
		return nil, err
	}
	switch opts.Network {
	case "", NetworkDefault:
		bd.network = b.cfg.DefaultNetwork
	case NetworkHost, NetworkNone, NetworkBridge:
		bd.network = opts.Network
	default:
		return nil, fmt.Errorf("build: network mode %q: only default, bridge, host and none are served for builds: %w", opts.Network, errdefs.ErrNotImplemented)
	}
	if bd.network == NetworkBridge && b.net == nil {
		return nil, fmt.Errorf("build: network mode bridge: this berthd has no bridge network for builds: %w", errdefs.ErrNotImplemented)
	}
	if opts.Context == nil {
		return nil, fmt.Errorf("build: no build context: %w", errdefs.ErrInvalidArgument)
	}
	if bd.ctxfs, err = readContext(ctx, opts.Context, filepath.Join(bd.dir, "context.spool")); err != nil {
		return nil, err
	}
	name := opts.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	rel, err := contextPath(name)
	if err != nil {
		return nil, err
	}
	content, err := bd.ctxfs.readFile(rel, maxDockerfileSize)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("build: Dockerfile %q not found in the build context: %w", name, errdefs.ErrInvalidArgument)
		}
		return nil, fmt.Errorf("build: read Dockerfile %s: %w", name, classify(err))
	}
	// The name the client gave is what errors name, except the
	// ".dockerfile.<random>" name clients give a Dockerfile from outside
	// the context.
	shown := filepath.Base(rel)
	if strings.HasPrefix(shown, ".dockerfile.") {
		shown = "Dockerfile"
	}
	if bd.df, err = parseDockerfile(shown, content); err != nil {
		return nil, err
	}
	if bd.ignore, err = ignoreMatcher(bd.ctxfs, rel); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	bd.escape = bd.df.escape
	return bd, nil
}

// close undoes what the build holds: its tmpfs and mounts, temp dirs and
// the lease. Containers and snapshots are removed by the steps themselves.
func (bd *build) close(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	log := logctx.From(ctx)
	bd.secrets.wipe()
	if bd.ctxfs != nil {
		bd.ctxfs.close()
	}
	if sb := bd.sandbox; sb != nil {
		if err := bd.b.net.Release(ctx, sb.ID); err != nil {
			log.WarnContext(ctx, "release the build's network", "build", bd.id, "error", err)
		}
		if err := bd.b.rt.RemoveSandbox(ctx, sb.ID); err != nil {
			log.WarnContext(ctx, "remove the build's sandbox", "build", bd.id, "error", err)
		}
	}
	if err := unmountBelow(bd.dir); err != nil {
		log.WarnContext(ctx, "unmount build mounts", "build", bd.id, "error", err)
	}
	if err := unmountAll(bd.stateDir); err != nil {
		log.WarnContext(ctx, "unmount build tmpfs", "build", bd.id, "error", err)
	}
	for _, d := range []string{bd.dir, bd.stateDir} {
		if err := os.RemoveAll(d); err != nil {
			log.WarnContext(ctx, "remove build dir", "build", bd.id, "dir", d, "error", err)
		}
	}
	bd.lease.Release()
}

// lexer returns a Lex for one expansion: a Lex is not safe for concurrent
// use (it keeps a word buffer) and stages expand concurrently.
func (bd *build) lexer() *shell.Lex { return shell.NewLex(bd.escape) }

// emit reports e for the stage ctx belongs to.
func (bd *build) emit(ctx context.Context, e Event) {
	bd.printer.emit(stageOf(ctx), e)
}

func (bd *build) info(ctx context.Context, format string, args ...any) {
	bd.emit(ctx, Event{Kind: EventInfo, Text: fmt.Sprintf(format, args...)})
}

// useArg marks a build argument as consumed.
func (bd *build) useArg(k string) {
	bd.mu.Lock()
	bd.usedArgs[k] = true
	bd.mu.Unlock()
}

// tmpDir makes a fresh directory below the build's dir.
func (bd *build) tmpDir(prefix string) (string, error) {
	bd.mu.Lock()
	bd.seq++
	n := bd.seq
	bd.mu.Unlock()
	d := filepath.Join(bd.dir, fmt.Sprintf("%s%d", prefix, n))
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", err
	}
	return d, nil
}

// run builds the stages the target needs and records the image.
func (bd *build) run(ctx context.Context) (*Result, error) {
	for _, w := range bd.opts.Warnings {
		bd.info(ctx, "[Warning] %s", w)
	}
	df := bd.df
	targetIdx := len(df.stages) - 1
	if bd.opts.Target != "" {
		i, ok := instructions.HasStage(df.stages, bd.opts.Target)
		if !ok {
			var names []string
			for _, s := range df.stages {
				if s.Name != "" {
					names = append(names, s.Name)
				}
			}
			return nil, classify(fmt.Errorf("%s: target stage %q could not be found (stages: %s)", df.name, bd.opts.Target, strings.Join(names, ", ")))
		}
		targetIdx = i
	}
	targetName := df.stages[targetIdx].Name
	global, err := metaArgs(df, bd.lexer(), defaultArgs(bd.host, bd.target, targetName), bd.buildArgs)
	if err != nil {
		return nil, err
	}
	bd.global = global
	for _, cmd := range df.metaArgs {
		for _, kv := range cmd.Args {
			bd.useArg(kv.Key)
		}
	}
	if err := bd.planStages(); err != nil {
		return nil, err
	}
	order, err := bd.buildOrder(targetIdx)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, i := range order {
		bd.stages[i].scheduled = true
		total += 1 + len(bd.stages[i].def.Commands)
	}
	if len(bd.opts.Labels) > 0 {
		total++
	}
	bd.printer.start(order, total)
	err = bd.runStages(ctx, order)
	bd.tm.Done("stages")
	// Steps that succeeded stay cached even when a later one failed.
	if rerr := bd.recordCache(ctx); rerr != nil && err == nil {
		err = rerr
	}
	bd.tm.Done("cache")
	if err != nil {
		return nil, err
	}
	final := bd.stages[targetIdx].state
	if len(bd.opts.Labels) > 0 {
		bd.emit(ctx, Event{Kind: EventStep, Stage: bd.stages[targetIdx].label(), Instruction: "LABEL " + labelsText(bd.opts.Labels)})
		final = final.clone()
		if final.img.Config.Labels == nil {
			final.img.Config.Labels = map[string]string{}
		}
		maps.Copy(final.img.Config.Labels, bd.opts.Labels)
		key := stepKey(final.key, "LABELS", bd.opts.Labels)
		hit, err := bd.cached(ctx, final, key)
		if err != nil {
			return nil, err
		}
		if hit {
			bd.emit(ctx, Event{Kind: EventCached})
		} else {
			final.key = key
			if err := bd.remember(final); err != nil {
				return nil, err
			}
			if err := bd.recordCache(ctx); err != nil {
				return nil, err
			}
		}
	}
	var unused []string
	for k := range bd.buildArgs {
		if !bd.usedArgs[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		slices.Sort(unused)
		bd.info(ctx, "[Warning] One or more build-args %v were not consumed", unused)
	}
	cfg := final.config()
	if cfg.Created == nil {
		now := time.Now().UTC()
		cfg.Created = &now
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("build: encode config: %w", err)
	}
	img, err := bd.b.images.CommitImage(ctx, imagestore.ImageCommit{Config: raw, Layers: final.layers, Tags: bd.opts.Tags})
	bd.tm.Done("image")
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if len(bd.opts.Labels) > 0 {
		bd.emit(ctx, Event{Kind: EventStepDone, ID: img.ID.String()})
	}
	return &Result{Image: img, Tags: img.RepoTags}, nil
}

func labelsText(labels map[string]string) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, strconv.Quote(k)+"="+strconv.Quote(labels[k]))
	}
	return strings.Join(parts, " ")
}

// planStages expands every stage's FROM and finds its dependencies: its
// base stage, the stages COPY --from and RUN --mount from= name.
func (bd *build) planStages() error {
	df := bd.df
	byName := map[string]int{}
	for i := range df.stages {
		def := &df.stages[i]
		st := &stage{index: i, def: def, baseStage: -1, name: def.Name, done: make(chan struct{})}
		base, _, err := bd.lexer().ProcessWord(def.BaseName, bd.global)
		if err != nil {
			return lineError(df.name, def.Location, err)
		}
		if base == "" {
			return lineError(df.name, def.Location, fmt.Errorf("base name (%s) should not be blank", def.BaseName))
		}
		st.base = base
		if j, ok := byName[strings.ToLower(base)]; ok {
			st.baseStage = j
			st.deps = append(st.deps, j)
		}
		if def.Platform != "" {
			pv, _, err := bd.lexer().ProcessWord(def.Platform, bd.global)
			if err != nil {
				return lineError(df.name, def.Location, err)
			}
			p, err := parsePlatform(pv, bd.target)
			if err != nil {
				return lineError(df.name, def.Location, err)
			}
			st.platform = &p
		}
		if def.Name != "" {
			byName[strings.ToLower(def.Name)] = i
		}
		bd.stages = append(bd.stages, st)
	}
	for _, st := range bd.stages {
		for _, cmd := range st.def.Commands {
			var froms []string
			switch c := cmd.(type) {
			case *instructions.CopyCommand:
				if c.From != "" {
					froms = append(froms, c.From)
				}
			case *instructions.RunCommand:
				for _, m := range instructions.GetMounts(c) {
					if m.From != "" {
						froms = append(froms, m.From)
					}
				}
			}
			for _, from := range froms {
				if strings.Contains(from, "$") {
					return lineError(df.name, cmd.Location(), fmt.Errorf("variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround"))
				}
				j, ok := df.stageIndex(from)
				if !ok {
					continue // an image
				}
				if j >= st.index {
					return lineError(df.name, cmd.Location(), fmt.Errorf("cannot copy from stage %q, it needs to be defined before current stage %q", from, st.label()))
				}
				st.deps = append(st.deps, j)
			}
		}
	}
	return nil
}

// buildOrder lists the stages the target needs, dependencies first.
func (bd *build) buildOrder(target int) ([]int, error) {
	var order []int
	seen := map[int]bool{}
	var visit func(i int)
	visit = func(i int) {
		if seen[i] {
			return
		}
		seen[i] = true
		for _, d := range bd.stages[i].deps {
			visit(d)
		}
		order = append(order, i)
	}
	visit(target)
	return order, nil
}

// runStages runs the stages concurrently: each waits for another only
// where it needs its result (see waitStage). The first failure cancels
// the rest.
func (bd *build) runStages(ctx context.Context, order []int) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errs := make([]error, len(order))
	var wg sync.WaitGroup
	for n, i := range order {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := bd.stages[i]
			defer close(st.done)
			if err := bd.runStage(withStage(ctx, i), st); err != nil {
				errs[n] = err
				cancel(err)
				return
			}
			bd.printer.finish(i)
		}()
	}
	wg.Wait()
	bd.printer.flush()
	// The first stage's error in build order that is not another's
	// cancellation is the one to report.
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	for _, err := range errs {
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
				return cause
			}
			return err
		}
	}
	return nil
}

// waitStage waits for stage i's result.
func (bd *build) waitStage(ctx context.Context, i int) (*state, error) {
	st := bd.stages[i]
	if !st.scheduled {
		// Only an ONBUILD trigger can name a stage the target's plan did
		// not include.
		return nil, fmt.Errorf("stage %q is not part of this build's target", st.label())
	}
	select {
	case <-st.done:
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	if st.state == nil {
		return nil, fmt.Errorf("stage %q failed: %w", st.label(), context.Canceled)
	}
	return st.state, nil
}

// stepKey derives a step's cache key from its parent's and what the step
// does (the instruction after expansion, and whatever else its result
// depends on: file checksums, mount sources).
func stepKey(parent digest.Digest, parts ...any) digest.Digest {
	h := sha256.New()
	h.Write([]byte(parent))
	for _, p := range parts {
		b, err := json.Marshal(p)
		if err != nil {
			panic(err) // only plain values are keyed
		}
		h.Write([]byte{0})
		h.Write(b)
	}
	return digest.NewDigest(digest.SHA256, h)
}

// cached looks up key; a hit restores st from the entry.
func (bd *build) cached(ctx context.Context, st *state, key digest.Digest) (bool, error) {
	if bd.opts.NoCache {
		return false, nil
	}
	e, err := bd.lease.Cache(ctx, key)
	if errdefs.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := st.restore(e); err != nil {
		return false, err
	}
	bd.mu.Lock()
	bd.hits = append(bd.hits, key)
	bd.mu.Unlock()
	return true, nil
}

// remember queues a cache entry for st (recorded at the end of the build).
func (bd *build) remember(st *state) error {
	b, _, err := st.encode()
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	bd.mu.Lock()
	bd.entries = append(bd.entries, imagestore.CacheEntry{Key: st.key, Layers: slices.Clone(st.layers), Config: b, Created: now, LastUsed: now})
	bd.mu.Unlock()
	return nil
}

func (bd *build) recordCache(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := bd.b.images.PutBuildCache(ctx, bd.entries); err != nil {
		return fmt.Errorf("build: %w", err)
	}
	bd.entries = nil
	if len(bd.hits) > 0 {
		if err := bd.b.images.TouchBuildCache(ctx, bd.hits); err != nil {
			return fmt.Errorf("build: %w", err)
		}
	}
	bd.hits = nil
	return nil
}

// baseState resolves a stage's FROM: scratch, an earlier stage or an image
// (pulled when absent, or always with Pull).
func (bd *build) baseState(ctx context.Context, st *stage) (*state, error) {
	p := bd.target
	if st.platform != nil {
		p = *st.platform
	}
	if st.baseStage >= 0 {
		base, err := bd.waitStage(ctx, st.baseStage)
		if err != nil {
			return nil, err
		}
		s := base.clone()
		if st.platform != nil {
			s.arch = p.Arch
		}
		s.cmdSet = false
		return s, nil
	}
	if strings.EqualFold(st.base, "scratch") {
		s := &state{img: emptyImage(p), key: stepKey("", "FROM scratch", p.String()), workdirOK: true, arch: p.Arch}
		s.env = slices.Clone(envList(s.img.Config.Env))
		return s, nil
	}
	img, err := bd.image(ctx, st.base, p, st.def.Location)
	if err != nil {
		return nil, err
	}
	s, err := imageState(img, stepKey("", "FROM", img.ID.String(), p.String()))
	if err != nil {
		return nil, err
	}
	s.arch = p.Arch
	return s, nil
}

// image finds a base image (or a COPY --from / mount image) in the store,
// pulling it when absent, of another platform, or always with Pull.
func (bd *build) image(ctx context.Context, name string, p platform, loc []parser.Range) (*imagestore.Image, error) {
	named, err := reference.ParseNormalizedNamed(name)
	if err != nil {
		return nil, lineError(bd.df.name, loc, fmt.Errorf("invalid image name %q: %w", name, err))
	}
	ref := reference.TagNameOnly(named).String()
	if !bd.opts.Pull {
		img, err := bd.lease.Image(ctx, ref)
		if err == nil && matchesPlatform(img, p) {
			return img, nil
		}
		if err != nil && !errdefs.IsNotFound(err) {
			return nil, err
		}
	}
	_, err = bd.b.images.Pull(ctx, ref, imagestore.PullOptions{
		Auth:     bd.auth(named),
		Platform: &ocispec.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
		Progress: func(pr imagestore.Progress) { bd.emit(ctx, Event{Kind: EventPull, Pull: pr}) },
	})
	if err != nil {
		if !strings.ContainsAny(name, "/:@") {
			// A plain word is most likely a stage name mistyped.
			err = fmt.Errorf("%q is not a stage of this Dockerfile, and pulling it as an image failed: %w", name, err)
		}
		return nil, lineError(bd.df.name, loc, err)
	}
	img, err := bd.lease.Image(ctx, ref)
	if err != nil {
		return nil, lineError(bd.df.name, loc, err)
	}
	return img, nil
}

func matchesPlatform(img *imagestore.Image, p platform) bool {
	c := img.Config
	if c.OS == "" && c.Architecture == "" {
		return true // images built without a platform
	}
	return c.OS == p.OS && c.Architecture == p.Arch && (p.Variant == "" || c.Variant == p.Variant)
}

func (bd *build) auth(named reference.Named) *imagestore.Auth {
	host := reference.Domain(named)
	for _, h := range []string{host, "https://" + host, "http://" + host} {
		if a, ok := bd.opts.Auth[h]; ok {
			return &a
		}
	}
	if host == "docker.io" {
		for _, h := range []string{"https://index.docker.io/v1/", "index.docker.io", "registry-1.docker.io"} {
			if a, ok := bd.opts.Auth[h]; ok {
				return &a
			}
		}
	}
	return nil
}

// bridgeSandbox returns the build's sandbox on the default bridge, making
// it on first use: one network namespace (and IP) for every RUN of the
// build, as docker's classic builder gives each build step the bridge.
func (bd *build) bridgeSandbox(ctx context.Context) (*runtime.Sandbox, error) {
	bd.sandboxOnce.Do(func() {
		ctx := context.WithoutCancel(ctx)
		sb, err := bd.b.rt.CreateSandbox(ctx, runtime.SandboxConfig{
			Name: "build-" + bd.id[:12], Namespace: "builder", UID: bd.id, Hostname: bd.id[:12],
			Namespaces: runtime.SandboxNamespaces{Network: runtime.NamespacePod, IPC: runtime.NamespacePod, PID: runtime.NamespaceContainer},
			Labels:     map[string]string{"berth.build": bd.id},
		})
		if err != nil {
			bd.sandboxErr = fmt.Errorf("network sandbox for the build: %w", err)
			return
		}
		if err := bd.b.net.Attach(ctx, sb.ID, bd.id[:12], sb.NetNSPath, sb.HostsPath, sb.ResolvConfPath, bd.opts.ExtraHosts); err != nil {
			bd.b.rt.RemoveSandbox(ctx, sb.ID)
			bd.sandboxErr = fmt.Errorf("attach the build to the bridge network: %w", err)
			return
		}
		bd.sandbox = sb
	})
	return bd.sandbox, bd.sandboxErr
}
