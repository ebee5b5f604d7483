package builder

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
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

// ignoreMatcher reads the context's ignore file: <Dockerfile>.dockerignore
// next to the Dockerfile when there is one (BuildKit's rule), else
// .dockerignore at the root. nil means nothing is ignored.
func ignoreMatcher(c *ctxFS, dockerfile string) (*patternmatcher.PatternMatcher, error) {
	for _, name := range []string{dockerfile + ".dockerignore", ".dockerignore"} {
		b, err := c.readFile(name, maxDockerfileSize)
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
