package builder

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore/unpack"
)

// maxDockerfileSize bounds the Dockerfile read into memory.
const maxDockerfileSize = 4 << 20

// decompress returns r decompressed when it starts with a gzip or bzip2
// header (docker accepts compressed contexts), else r as is. kind names the
// compression for error messages; xz is recognised and refused.
func decompress(r io.Reader) (io.Reader, string, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, _ := br.Peek(6)
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "gzip", err
		}
		zr.Multistream(true)
		return zr, "gzip", nil
	case bytes.HasPrefix(head, []byte("BZh")):
		return bzip2.NewReader(br), "bzip2", nil
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}):
		return nil, "xz", fmt.Errorf("xz-compressed archives: %w", errdefs.ErrNotImplemented)
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return nil, "zstd", fmt.Errorf("zstd-compressed archives: %w", errdefs.ErrNotImplemented)
	}
	return br, "", nil
}

// extractContext extracts the build context tar r into dir (which exists).
// Names that are absolute or contain "..", links leaving the context and
// device nodes are refused; nothing is written outside dir. Ownership is
// not applied: context files are root's, as COPY makes them.
func extractContext(ctx context.Context, r io.Reader, dir string) error {
	dr, kind, err := decompress(r)
	if err != nil {
		return fmt.Errorf("read build context: %w", classed{err, errdefs.ErrInvalidArgument})
	}
	// An empty body is an empty context (a Dockerfile-less build fails
	// later, naming the Dockerfile).
	br := bufio.NewReader(dr)
	if _, err := br.Peek(1); err == io.EOF {
		return nil
	}
	if _, err := unpack.Apply(ctx, dir, br, unpack.Options{NoChown: true, Plain: true}); err != nil {
		what := "tar"
		if kind != "" {
			what = kind + "-compressed tar"
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read build context: %w", err)
		}
		return fmt.Errorf("read build context (a %s archive is expected): %w", what, classed{err, errdefs.ErrInvalidArgument})
	}
	// The archive had no root entry: the context root is 0755 whatever
	// the umask made it.
	return os.Chmod(dir, 0o755)
}

// contextPath cleans a path given for the context ("./Dockerfile",
// "sub/../Dockerfile") into a relative one, refusing paths that leave it.
func contextPath(p string) (string, error) {
	c := path.Clean("/" + filepath.ToSlash(p))
	rel := strings.TrimPrefix(c, "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// readContextFile reads a regular file of the context, resolving symlinks
// inside the context only.
func readContextFile(dir, rel string, limit int64) ([]byte, error) {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(root)
	fd, err := unix.Openat2(root, rel, &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: %w", rel, errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", rel, limit, errdefs.ErrInvalidArgument)
	}
	return b, nil
}

// ignoreMatcher reads the context's ignore file: <Dockerfile>.dockerignore
// next to the Dockerfile when there is one (BuildKit's rule), else
// .dockerignore at the root. nil means nothing is ignored.
func ignoreMatcher(dir, dockerfile string) (*patternmatcher.PatternMatcher, error) {
	for _, name := range []string{dockerfile + ".dockerignore", ".dockerignore"} {
		b, err := readContextFile(dir, name, maxDockerfileSize)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		patterns, err := ignorefile.ReadAll(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, classed{err, errdefs.ErrInvalidArgument})
		}
		if len(patterns) == 0 {
			return nil, nil
		}
		pm, err := patternmatcher.New(patterns)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, classed{err, errdefs.ErrInvalidArgument})
		}
		return pm, nil
	}
	return nil, nil
}
