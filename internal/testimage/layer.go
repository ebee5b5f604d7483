package testimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// entry is one member of a layer tar.
type entry struct {
	name     string // relative, no leading "/" or "./"; directories without a trailing "/"
	typ      byte
	mode     int64
	uid, gid int
	data     []byte
	linkname string
}

// layerBuilder collects the members of one layer and writes them in a
// deterministic order: mtime 0, sorted by name, hard links last so that
// their targets always precede them (a hard link before its target cannot be
// extracted).
type layerBuilder struct {
	entries map[string]entry
}

func newLayer() *layerBuilder { return &layerBuilder{entries: map[string]entry{}} }

func (b *layerBuilder) add(e entry) {
	e.name = strings.TrimPrefix(path.Clean("/"+e.name), "/")
	b.entries[e.name] = e
}

func (b *layerBuilder) dir(name string, mode int64) {
	b.add(entry{name: name, typ: tar.TypeDir, mode: mode})
}

func (b *layerBuilder) file(name string, mode int64, data []byte) {
	b.add(entry{name: name, typ: tar.TypeReg, mode: mode, data: data})
}

func (b *layerBuilder) owned(name string, uid, gid int) {
	e := b.entries[strings.TrimPrefix(path.Clean("/"+name), "/")]
	e.uid, e.gid = uid, gid
	b.entries[e.name] = e
}

func (b *layerBuilder) symlink(name, target string) {
	b.add(entry{name: name, typ: tar.TypeSymlink, mode: 0o777, linkname: target})
}

func (b *layerBuilder) hardlink(name, target string) {
	b.add(entry{name: name, typ: tar.TypeLink, mode: 0o755, linkname: target})
}

// tar returns the uncompressed tar stream.
func (b *layerBuilder) tar() ([]byte, error) {
	es := make([]entry, 0, len(b.entries))
	for _, e := range b.entries {
		es = append(es, e)
	}
	slices.SortFunc(es, func(x, y entry) int {
		xl, yl := x.typ == tar.TypeLink, y.typ == tar.TypeLink
		if xl != yl {
			if xl {
				return 1
			}
			return -1
		}
		return strings.Compare(x.name, y.name)
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range es {
		name := e.name
		if e.typ == tar.TypeDir {
			name += "/"
		}
		hdr := &tar.Header{
			Typeflag: e.typ,
			Name:     name,
			Linkname: e.linkname,
			Mode:     e.mode,
			Uid:      e.uid,
			Gid:      e.gid,
			ModTime:  time.Unix(0, 0),
			Format:   tar.FormatPAX,
		}
		if e.typ == tar.TypeReg {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("write tar header %s: %w", e.name, err)
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, fmt.Errorf("write tar data %s: %w", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("close tar: %w", err)
	}
	return buf.Bytes(), nil
}

// layer returns the gzip-compressed OCI layer.
func (b *layerBuilder) layer(level int) (v1.Layer, error) {
	raw, err := b.tar()
	if err != nil {
		return nil, err
	}
	return gzipLayer(raw, level)
}

// gzipLayer compresses an uncompressed tar. Go's gzip writes no name and a
// zero mtime in the header, so the same input gives the same bytes.
func gzipLayer(raw []byte, level int) (v1.Layer, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, level)
	if err != nil {
		return nil, fmt.Errorf("create gzip writer: %w", err)
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress layer: %w", err)
	}
	gz := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gz)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("make layer: %w", err)
	}
	// Hide tarball's Descriptor method: it carries an empty, non-nil
	// annotations map that mutate copies into the manifest, so the manifest
	// object and its serialized form would disagree.
	return struct{ v1.Layer }{l}, nil
}
