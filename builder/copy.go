package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/patternmatcher"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore"
	"github.com/berth-dev/berth/imagestore/unpack"
)

// copySpec is a COPY or an ADD after expansion.
type copySpec struct {
	add      bool
	srcs     []string
	contents []instructions.SourceContent
	dest     string
	from     string
	chown    string
	chmod    string
	link     bool
	parents  bool
	excludes []string
	checksum string
	unpack   *bool
	keepGit  *bool
}

func copyOf(c *instructions.CopyCommand) copySpec {
	return copySpec{srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath, from: c.From,
		chown: c.Chown, chmod: c.Chmod, link: c.Link, parents: c.Parents, excludes: c.ExcludePatterns}
}

func addOf(c *instructions.AddCommand) copySpec {
	return copySpec{add: true, srcs: c.SourcePaths, contents: c.SourceContents, dest: c.DestPath,
		chown: c.Chown, chmod: c.Chmod, link: c.Link, excludes: c.ExcludePatterns, checksum: c.Checksum,
		unpack: c.Unpack, keepGit: c.KeepGitDir}
}

func (cs copySpec) name() string {
	if cs.add {
		return "ADD"
	}
	return "COPY"
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

func isGit(s string) bool {
	return strings.HasPrefix(s, "git@") || strings.HasPrefix(s, "git://") ||
		(isURL(s) && (strings.HasSuffix(s, ".git") || strings.Contains(s, ".git#")))
}

func hasWildcard(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '*', '?', '[':
			return true
		case '\\':
			i++
		}
	}
	return false
}

// source is one item a COPY copies: a path in the step's source tree
// (the context, a stage or an image), a downloaded file or a heredoc.
type source struct {
	rel string
	// follow: the item itself may be a symlink to follow (a path the
	// Dockerfile named).
	follow bool
	// fromContext: the .dockerignore applies below it.
	fromContext bool
	// dir, when set, holds rel, a file fetched by ADD <url> (never
	// unpacked).
	dir string
	// data, when set, is a heredoc's content (rel is its name).
	data *string
	// unchecked: a path in a stage or image (as the Dockerfile gives
	// it), not looked up yet: its cache key needs only its name.
	unchecked string
}

// copyOpts are what applies to every copied file.
type copyOpts struct {
	chown   *owner
	chmod   *os.FileMode
	exclude *patternmatcher.PatternMatcher
	ignore  *patternmatcher.PatternMatcher
	// keepOwner keeps the source's owners (from a stage or an image);
	// context files are root's.
	keepOwner bool
}

func (bd *build) runCopy(ctx context.Context, s *state, cs copySpec) error {
	name := cs.name()
	switch {
	case cs.parents:
		return fmt.Errorf("%s --parents: %w", name, errdefs.ErrNotImplemented)
	case cs.checksum != "" && !cs.add:
		return fmt.Errorf("checksum can't be specified for COPY")
	case cs.checksum != "" && (len(cs.srcs) != 1 || !isURL(cs.srcs[0])):
		return fmt.Errorf("ADD --checksum needs exactly one http(s) source")
	case cs.keepGit != nil:
		return fmt.Errorf("ADD --keep-git-dir: git sources: %w", errdefs.ErrNotImplemented)
	}
	var chmod *os.FileMode
	if cs.chmod != "" {
		m, err := strconv.ParseUint(cs.chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("invalid chmod parameter: '%v'. it should be octal string and between 0 and 07777", cs.chmod)
		}
		fm := unixMode(uint32(m))
		chmod = &fm
	}
	var exclude *patternmatcher.PatternMatcher
	if len(cs.excludes) > 0 {
		pm, err := patternmatcher.New(cs.excludes)
		if err != nil {
			return fmt.Errorf("%s --exclude: %w", name, err)
		}
		exclude = pm
	}

	// Where the sources come from: the context, or the layers of a stage
	// or an image, mounted only when a file must be read from them (a
	// wildcard to match, or a step not in the cache).
	var srcTree tree
	fromKey, keepOwner := "", false
	var fromLayers []imagestore.Layer
	if cs.from == "" {
		srcTree = bd.ctxfs
	} else {
		layers, err := bd.fromLayers(ctx, cs.from)
		if err != nil {
			return err
		}
		fromLayers, keepOwner = layers, true
		fromKey = "from:scratch"
		if len(layers) > 0 {
			fromKey = "from:" + topChain(layers).String()
		}
	}
	var releases []func()
	defer func() {
		for i := len(releases) - 1; i >= 0; i-- {
			releases[i]()
		}
	}()
	mountFrom := func() error {
		if srcTree != nil {
			return nil
		}
		root, release, err := bd.viewLayers(ctx, fromLayers)
		if err != nil {
			return err
		}
		releases = append(releases, release)
		rfd, err := openRoot(root)
		if err != nil {
			return err
		}
		releases = append(releases, func() { unix.Close(rfd) })
		srcTree = diskTree{fd: rfd}
		return nil
	}

	var sources []source
	keyParts := []any{name, cs.dest, cs.chown, cs.chmod, cs.link, cs.excludes, fromKey}
	for _, src := range cs.srcs {
		switch {
		case isGit(src):
			return fmt.Errorf("%s %s: git sources: %w", name, src, errdefs.ErrNotImplemented)
		case isURL(src):
			if !cs.add {
				return fmt.Errorf("source can't be a URL for COPY")
			}
			src2, sum, err := bd.download(ctx, src, cs.checksum)
			if err != nil {
				return err
			}
			sources = append(sources, src2)
			keyParts = append(keyParts, "url", src, sum)
		case cs.from != "" && !hasWildcard(src):
			// The stage's or image's content is in fromKey: the key
			// needs only the name.
			rel := cleanRel(src)
			sources = append(sources, source{rel: rel, follow: true, unchecked: src})
			keyParts = append(keyParts, rel)
		default:
			if err := mountFrom(); err != nil {
				return err
			}
			found, err := bd.matchSources(srcTree, src, cs.from == "")
			if err != nil {
				return err
			}
			for _, f := range found {
				sources = append(sources, f)
				if cs.from == "" {
					sum, err := bd.ctxfs.checksum(f.rel, f.follow, bd.ignore, exclude)
					if err != nil {
						return err
					}
					keyParts = append(keyParts, f.rel, sum)
				} else {
					keyParts = append(keyParts, f.rel)
				}
			}
		}
	}
	for _, c := range cs.contents {
		data := c.Data
		sources = append(sources, source{rel: c.Path, data: &data})
		keyParts = append(keyParts, "heredoc", c.Path, data)
	}
	multi := len(sources) > 1 || slices.ContainsFunc(cs.srcs, hasWildcard)

	dest := cs.dest
	destDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		dest = path.Join(s.img.Config.WorkingDir, dest)
		if s.img.Config.WorkingDir == "" {
			dest = path.Join("/", dest)
		}
	}
	dest = path.Clean(dest)

	key := stepKey(s.key, keyParts...)
	hit, err := bd.cached(ctx, s, key)
	if err != nil {
		return err
	}
	if hit {
		bd.emit(ctx, Event{Kind: EventCached})
		return bd.done(ctx, s)
	}
	for _, src := range sources {
		if src.unchecked == "" {
			continue
		}
		if err := mountFrom(); err != nil {
			return err
		}
		if _, err := bd.matchSources(srcTree, src.unchecked, false); err != nil {
			return err
		}
	}

	lowers := s.layers
	if cs.link {
		lowers = nil
	}
	var ownerSpec *owner
	if cs.chown != "" {
		if o, ok := numericOwner(cs.chown); ok {
			ownerSpec = &o
		} else if cs.link {
			return fmt.Errorf("%s --link --chown=%s: user and group names need the image's /etc/passwd, which --link does not see; use numeric IDs", name, cs.chown)
		}
	}
	l, err := bd.onRootfs(ctx, s, name+" "+strings.Join(cs.srcs, " ")+" "+cs.dest, lowers, func(root string) error {
		if cs.chown != "" && ownerSpec == nil {
			uid, gid, err := bd.resolveUser(root, cs.chown)
			if err != nil {
				return err
			}
			ownerSpec = &owner{uid, gid}
		}
		opts := copyOpts{chown: ownerSpec, chmod: chmod, exclude: exclude, keepOwner: keepOwner}
		return bd.copyInto(ctx, root, dest, destDir, multi, sources, srcTree, opts, cs)
	})
	if err != nil {
		return err
	}
	if l != nil {
		s.layers = append(s.layers, *l)
	}
	msg := name
	if cs.chown != "" {
		msg += " --chown=" + cs.chown
	}
	if cs.chmod != "" {
		msg += " --chmod=" + cs.chmod
	}
	for _, src := range cs.srcs {
		msg += " " + src
	}
	for _, c := range cs.contents {
		msg += " <<" + c.Path
	}
	msg += " " + cs.dest + " # buildkit"
	s.addHistory(msg, l != nil, time.Now())
	s.key = key
	if err := bd.remember(s); err != nil {
		return err
	}
	return bd.done(ctx, s)
}

func numericOwner(spec string) (owner, bool) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := strconv.Atoi(u)
	if err != nil || uid < 0 {
		return owner{}, false
	}
	gid := uid
	if hasGroup {
		if gid, err = strconv.Atoi(g); err != nil || gid < 0 {
			return owner{}, false
		}
	}
	return owner{uid, gid}, true
}

func unixMode(m uint32) os.FileMode {
	fm := os.FileMode(m & 0o777)
	if m&unix.S_ISUID != 0 {
		fm |= os.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		fm |= os.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		fm |= os.ModeSticky
	}
	return fm
}

func permBits(m os.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		p |= unix.S_ISUID
	}
	if m&os.ModeSetgid != 0 {
		p |= unix.S_ISGID
	}
	if m&os.ModeSticky != 0 {
		p |= unix.S_ISVTX
	}
	return p
}

// fromLayers resolves a --from: a stage (by name or index) or an image.
func (bd *build) fromLayers(ctx context.Context, from string) ([]imagestore.Layer, error) {
	if i, ok := bd.df.stageIndex(from); ok {
		st, err := bd.waitStage(ctx, i)
		if err != nil {
			return nil, err
		}
		return st.layers, nil
	}
	img, err := bd.image(ctx, from, bd.target, nil)
	if err != nil {
		return nil, err
	}
	return img.Layers, nil
}

// viewLayers mounts layers read-only under the build's dir (an empty dir
// for none) and returns the root and its unmount.
func (bd *build) viewLayers(ctx context.Context, layers []imagestore.Layer) (string, func(), error) {
	dir, err := bd.tmpDir("view")
	if err != nil {
		return "", func() {}, err
	}
	if len(layers) == 0 {
		return dir, func() { os.RemoveAll(dir) }, nil
	}
	snap, held := bd.b.newSnapshot()
	ms, err := bd.b.images.ViewLayers(ctx, snap, layers)
	if err != nil {
		held()
		return "", func() {}, err
	}
	if err := mountAll(ms, dir); err != nil {
		bd.b.images.RemoveSnapshot(context.WithoutCancel(ctx), snap)
		held()
		return "", func() {}, err
	}
	return dir, func() {
		unmountAll(dir)
		os.Remove(dir)
		bd.b.images.RemoveSnapshot(context.WithoutCancel(ctx), snap)
		held()
	}, nil
}

// cleanRel is a path given in a Dockerfile, relative to a tree's root
// ("." for the root).
func cleanRel(p string) string {
	rel := strings.TrimLeft(path.Clean("/"+filepath.ToSlash(p)), "/")
	if rel == "" {
		rel = "."
	}
	return rel
}

// matchSources finds what src names in t: one path, or with wildcards
// every match (none is fine, as in BuildKit). In the context, excluded
// paths do not exist.
func (bd *build) matchSources(t tree, src string, fromContext bool) ([]source, error) {
	rel := cleanRel(src)
	excluded := func(p string) bool {
		if !fromContext || bd.ignore == nil || p == "." {
			return false
		}
		m, _ := bd.ignore.MatchesOrParentMatches(p)
		return m
	}
	if !hasWildcard(rel) {
		_, err := t.stat(rel, true)
		if err != nil || excluded(rel) {
			where := "build context"
			if !fromContext {
				where = "source stage or image"
			}
			if err == nil || errors.Is(err, unix.ENOENT) {
				return nil, classed{fmt.Errorf("file not found in %s or excluded by .dockerignore: stat %s: file does not exist", where, src), errdefs.ErrNotFound}
			}
			return nil, fmt.Errorf("%s: %w", src, err)
		}
		return []source{{rel: rel, follow: true, fromContext: fromContext}}, nil
	}
	var out []source
	var walk func(dir string, comps []string) error
	walk = func(dir string, comps []string) error {
		if len(comps) == 0 {
			if !excluded(dir) {
				out = append(out, source{rel: dir, follow: true, fromContext: fromContext})
			}
			return nil
		}
		if !hasWildcard(comps[0]) {
			next := path.Join(dir, unescape(comps[0]))
			if _, err := t.stat(next, false); err != nil {
				return nil
			}
			return walk(next, comps[1:])
		}
		ents, err := t.readDir(dir)
		if err != nil {
			return nil
		}
		for _, e := range ents {
			ok, err := path.Match(comps[0], e.name)
			if err != nil {
				return fmt.Errorf("bad pattern %q: %w", src, err)
			}
			if ok {
				if err := walk(path.Join(dir, e.name), comps[1:]); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(".", strings.Split(rel, "/")); err != nil {
		return nil, err
	}
	return out, nil
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// download fetches an ADD URL into the build's dir; sum is the content's
// digest, checked against --checksum when given.
func (bd *build) download(ctx context.Context, src, checksum string) (source, string, error) {
	u, err := url.Parse(src)
	if err != nil {
		return source{}, "", fmt.Errorf("ADD %s: %w", src, err)
	}
	name := "__unnamed__"
	if b := path.Base(u.Path); b != "." && b != "/" && b != "" {
		name = b
	}
	dir, err := bd.tmpDir("dl")
	if err != nil {
		return source{}, "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return source{}, "", fmt.Errorf("ADD %s: %w", src, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return source{}, "", fmt.Errorf("ADD %s: %w: %w", src, errdefs.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return source{}, "", fmt.Errorf("ADD %s: %w: the server answered %s", src, errdefs.ErrNotFound, resp.Status)
	}
	p := filepath.Join(dir, name)
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return source{}, "", err
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return source{}, "", fmt.Errorf("ADD %s: %w", src, err)
	}
	sum := "sha256:" + hex.EncodeToString(h.Sum(nil))
	if checksum != "" && checksum != sum {
		return source{}, "", fmt.Errorf("ADD %s: checksum mismatch: the content has %s, --checksum wants %s", src, sum, checksum)
	}
	// The file's time is the server's Last-Modified, as docker sets it.
	if lm, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		os.Chtimes(p, lm, lm)
	}
	return source{dir: dir, rel: name}, sum, nil
}

// copyInto copies the sources to dest inside root with docker's rules: a
// directory's contents go into dest; a file goes into dest when dest ends
// in "/" or is a directory, else becomes dest; several sources need a
// directory dest; ADD unpacks local tar archives into dest. Sources are
// read from srcTree, but downloads and heredocs.
func (bd *build) copyInto(ctx context.Context, root, dest string, destDir, multi bool, sources []source, srcTree tree, opts copyOpts, cs copySpec) error {
	rfd, err := openRoot(root)
	if err != nil {
		return err
	}
	defer unix.Close(rfd)
	isDir := func(p string) bool {
		fd, err := inRoot(rfd, p, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return false
		}
		unix.Close(fd)
		return true
	}
	if multi && !destDir && !isDir(dest) {
		return fmt.Errorf("When using %s with more than one source file, the destination must be a directory and end with a /", cs.name())
	}
	parentOwner := opts.chown
	c := &copier{ctx: ctx, dst: rfd, opts: opts, links: map[[2]uint64]string{}, workers: make(chan struct{}, copyWorkers)}
	for _, src := range sources {
		if err := ctx.Err(); err != nil {
			return err
		}
		if src.data != nil {
			target := dest
			if destDir || isDir(dest) {
				target = path.Join(dest, path.Base(src.rel))
			}
			if err := c.writeData(target, []byte(*src.data), parentOwner); err != nil {
				return err
			}
			continue
		}
		err := func() error {
			c.src = srcTree
			if src.dir != "" {
				dfd, err := openRoot(src.dir)
				if err != nil {
					return err
				}
				defer unix.Close(dfd)
				c.src = diskTree{fd: dfd}
			}
			st, err := c.src.stat(src.rel, src.follow)
			if err != nil {
				return fmt.Errorf("%s: %w", src.rel, err)
			}
			c.srcRel = src.rel
			c.ignore = nil
			if src.fromContext {
				c.ignore = bd.ignore
			}
			if st.Mode&unix.S_IFMT == unix.S_IFDIR {
				dfd, err := mkdirAllAt(rfd, dest, 0o755, parentOwner)
				if err != nil {
					return err
				}
				defer unix.Close(dfd)
				return c.dirContents(src.rel, dest, dfd)
			}
			target := dest
			if destDir || isDir(dest) {
				target = path.Join(dest, path.Base(src.rel))
			}
			if cs.add && src.dir == "" && (cs.unpack == nil || *cs.unpack) && st.Mode&unix.S_IFMT == unix.S_IFREG {
				done, err := c.tryUnpack(src.rel, dest, parentOwner)
				if err != nil || done {
					return err
				}
			}
			return c.entry(src.rel, target, &st, true, parentOwner)
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// copier copies from a tree (src) into a root (dst, a descriptor of a
// directory whose symlinks resolve inside it).
type copier struct {
	ctx    context.Context
	src    tree
	srcRel string
	dst    int
	opts   copyOpts
	ignore *patternmatcher.PatternMatcher
	links  map[[2]uint64]string
	// workers, when set, copies a directory's regular files (but hard
	// links) concurrently: creating a file costs a disk read of its inode
	// table block on a cold file system, and several in flight overlap
	// those waits.
	workers chan struct{}
}

// copyWorkers is how many files one COPY writes at once.
const copyWorkers = 4

func (c *copier) excluded(srcPath string, dir bool) bool {
	if c.ignore != nil {
		if m, _ := c.ignore.MatchesOrParentMatches(srcPath); m && !(dir && c.ignore.Exclusions()) {
			return true
		}
	}
	if c.opts.exclude != nil {
		if m, _ := c.opts.exclude.MatchesOrParentMatches(relTo(c.srcRel, srcPath)); m {
			return true
		}
	}
	return false
}

// relTo is p relative to the copied source base (a file's own name when p
// is the source itself).
func relTo(base, p string) string {
	if base == "." {
		return p
	}
	if r, ok := strings.CutPrefix(p, base+"/"); ok {
		return r
	}
	return path.Base(p)
}

// dirContents copies what the source dir srcPath holds into dstPath, the
// directory dfd refers to.
//
// Its regular files may be written by the workers; it returns once they
// are (its caller then sets the directory's time and closes dfd).
func (c *copier) dirContents(srcPath, dstPath string, dfd int) error {
	ents, err := c.src.readDir(srcPath)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var jobErr error
	failed := func() error {
		mu.Lock()
		defer mu.Unlock()
		return jobErr
	}
	for _, e := range ents {
		if err := c.ctx.Err(); err != nil {
			wg.Wait()
			return err
		}
		sp := path.Join(srcPath, e.name)
		if c.excluded(sp, e.st.Mode&unix.S_IFMT == unix.S_IFDIR) {
			continue
		}
		if c.workers != nil && e.st.Mode&unix.S_IFMT == unix.S_IFREG && e.st.Nlink <= 1 {
			c.workers <- struct{}{}
			if err := failed(); err != nil {
				<-c.workers
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-c.workers }()
				if err := c.entryIn(dfd, e.name, sp, path.Join(dstPath, e.name), &e.st, false); err != nil {
					mu.Lock()
					if jobErr == nil {
						jobErr = err
					}
					mu.Unlock()
				}
			}()
			continue
		}
		if err := c.entryIn(dfd, e.name, sp, path.Join(dstPath, e.name), &e.st, false); err != nil {
			wg.Wait()
			return err
		}
	}
	wg.Wait()
	return failed()
}

// owner of a copied entry: --chown, else the source's (from a stage or an
// image), else root.
func (c *copier) ownerOf(st *unix.Stat_t) owner {
	switch {
	case c.opts.chown != nil:
		return *c.opts.chown
	case c.opts.keepOwner:
		return owner{int(st.Uid), int(st.Gid)}
	}
	return owner{0, 0}
}

func (c *copier) modeOf(st *unix.Stat_t) uint32 {
	if c.opts.chmod != nil {
		return permBits(*c.opts.chmod)
	}
	return st.Mode & 0o7777
}

// entry copies one source entry (srcPath, stat st) to dstPath, making
// dstPath's missing parents (owned by parentOwner).
func (c *copier) entry(srcPath, dstPath string, st *unix.Stat_t, top bool, parentOwner *owner) error {
	dir, base := path.Split(dstPath)
	if base == "" {
		return fmt.Errorf("cannot copy to %q", dstPath)
	}
	pfd, err := mkdirAllAt(c.dst, dir, 0o755, parentOwner)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	return c.entryIn(pfd, base, srcPath, dstPath, st, top)
}

// entryIn copies one source entry to base in the directory pfd (dstPath
// names it in the root).
func (c *copier) entryIn(pfd int, base, srcPath, dstPath string, st *unix.Stat_t, top bool) error {
	own := c.ownerOf(st)
	var existing unix.Stat_t
	exists := unix.Fstatat(pfd, base, &existing, unix.AT_SYMLINK_NOFOLLOW) == nil
	typ := st.Mode & unix.S_IFMT
	if exists && !(typ == unix.S_IFDIR && existing.Mode&unix.S_IFMT == unix.S_IFDIR) {
		if existing.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := os.RemoveAll(fdPath(pfd, base)); err != nil {
				return err
			}
		} else if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace %s: %w", dstPath, err)
		}
		exists = false
	}
	mtime := unix.NsecToTimespec(unix.TimespecToNsec(st.Mtim))
	switch typ {
	case unix.S_IFDIR:
		if !exists {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return fmt.Errorf("create %s: %w", dstPath, err)
			}
			if err := unix.Fchownat(pfd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if err := unix.Fchmodat(pfd, base, c.modeOf(st), 0); err != nil {
				return err
			}
		}
		// A directory, just made or found: never a symlink.
		dfd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s: %w", dstPath, err)
		}
		err = c.dirContents(srcPath, dstPath, dfd)
		unix.Close(dfd)
		if err != nil {
			return err
		}
		if !exists {
			return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
		}
		return nil
	case unix.S_IFREG:
		if st.Nlink > 1 && !top {
			id := [2]uint64{st.Dev, st.Ino}
			if first, ok := c.links[id]; ok {
				ffd, err := inRoot(c.dst, path.Dir(first), unix.O_PATH|unix.O_DIRECTORY)
				if err == nil {
					err = unix.Linkat(ffd, path.Base(first), pfd, base, 0)
					unix.Close(ffd)
				}
				if err == nil {
					return nil
				}
			}
			c.links[id] = dstPath
		}
		in, err := c.src.open(srcPath, top)
		if err != nil {
			return err
		}
		defer in.Close()
		dfd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create %s: %w", dstPath, err)
		}
		out := os.NewFile(uintptr(dfd), dstPath)
		defer out.Close()
		if _, err := io.Copy(out, in); err != nil {
			return fmt.Errorf("copy %s: %w", srcPath, err)
		}
		xs, err := in.xattrs()
		if err != nil {
			return err
		}
		for name, v := range xs {
			if err := unix.Fsetxattr(dfd, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) && !errors.Is(err, unix.EPERM) {
				return fmt.Errorf("copy xattr %s of %s: %w", name, srcPath, err)
			}
		}
		if err := unix.Fchown(dfd, own.uid, own.gid); err != nil {
			return err
		}
		if err := unix.Fchmod(dfd, c.modeOf(st)); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFLNK:
		target, err := c.src.readlink(srcPath)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, pfd, base); err != nil {
			return fmt.Errorf("create %s: %w", dstPath, err)
		}
		if err := unix.Fchownat(pfd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknodat(pfd, base, typ|c.modeOf(st), int(st.Rdev)); err != nil {
			return fmt.Errorf("create %s: %w", dstPath, err)
		}
		if err := unix.Fchownat(pfd, base, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.UtimesNanoAt(pfd, base, []unix.Timespec{mtime, mtime}, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil // sockets are not copied
}

func fdPath(fd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(fd) + "/" + name
}

// writeData writes a heredoc's content as the file dstPath (mode 0644
// unless --chmod).
func (c *copier) writeData(dstPath string, data []byte, parentOwner *owner) error {
	dir, base := path.Split(dstPath)
	pfd, err := mkdirAllAt(c.dst, dir, 0o755, parentOwner)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := unix.Unlinkat(pfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("replace %s: %w", dstPath, err)
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dstPath, err)
	}
	f := os.NewFile(uintptr(fd), dstPath)
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return err
	}
	own := owner{0, 0}
	if c.opts.chown != nil {
		own = *c.opts.chown
	}
	if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
		return err
	}
	mode := uint32(0o644)
	if c.opts.chmod != nil {
		mode = permBits(*c.opts.chmod)
	}
	return unix.Fchmod(fd, mode)
}

// tryUnpack extracts srcPath into dest when it is a tar archive (plain,
// gzip or bzip2), as ADD does with local archives; done is false when it
// is not an archive.
func (c *copier) tryUnpack(srcPath, dest string, parentOwner *owner) (done bool, _ error) {
	f, err := c.src.open(srcPath, true)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if !isArchive(f) {
		return false, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return false, err
	}
	dr, _, err := decompress(f)
	if err != nil {
		return false, nil
	}
	dfd, err := mkdirAllAt(c.dst, dest, 0o755, parentOwner)
	if err != nil {
		return false, err
	}
	defer unix.Close(dfd)
	uo := unpack.Options{Plain: true}
	if o := c.opts.chown; o != nil {
		uo.Owner = &unpack.Owner{UID: o.uid, GID: o.gid}
	}
	if _, err := unpack.Apply(c.ctx, "/proc/self/fd/"+strconv.Itoa(dfd), dr, uo); err != nil {
		return false, fmt.Errorf("ADD %s: unpack: %w", srcPath, err)
	}
	return true, nil
}

// isArchive says whether r holds a tar (after decompression).
func isArchive(r io.Reader) bool {
	dr, _, err := decompress(r)
	if err != nil {
		return false
	}
	hdr := make([]byte, 512)
	if _, err := io.ReadFull(dr, hdr); err != nil {
		return false
	}
	// "ustar" magic at 257 (POSIX and GNU tars).
	return string(hdr[257:262]) == "ustar"
}

// copyDirContents copies a tree keeping owners and modes (seeding a cache
// mount from a stage).
func copyDirContents(ctx context.Context, from, to string) error {
	sfd, err := openRoot(from)
	if err != nil {
		return err
	}
	defer unix.Close(sfd)
	dfd, err := openRoot(to)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	c := &copier{ctx: ctx, src: diskTree{fd: sfd}, dst: dfd, opts: copyOpts{keepOwner: true}, links: map[[2]uint64]string{}}
	return c.dirContents(".", ".", dfd)
}
