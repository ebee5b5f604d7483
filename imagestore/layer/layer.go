// Package layer keeps image layers unpacked once per chain ID, each in its
// own directory that serves as an overlayfs lower directory:
//
//	<root>/layers/<chain hex>/fs         the unpacked layer
//	<root>/layers/<chain hex>/info.json  its Info
//
// A layer is unpacked into a temporary directory under <root>/layers (names
// starting with "."), checked against its diff ID, and renamed into place,
// so a layer directory either is complete or does not exist; Open removes
// whatever an interrupted unpack or removal left. Because a layer's
// directory does not depend on its parents (a lower directory holds only
// its own changes, whiteouts included), the layers of an image can be
// unpacked in parallel and in any order.
//
// The unpacked files are not fsynced (as containerd's overlay snapshotter
// does not): a killed daemon leaves only complete layers, but a power loss
// may lose file contents of layers unpacked just before it. Unpack syncs a
// layer's info and its rename; Commit (a build's layer, whose files come
// from a snapshot) syncs nothing, so a power loss may leave a committed
// layer with an empty info: Open removes a layer whose info is unreadable,
// as it removes unfinished ones, and the image store's check unpacks it
// again from its blob or drops what needed it. Sync makes committed layers
// durable at once (the image store calls it before it records an image
// built from them).
package layer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/imagestore/unpack"
	"github.com/berth-dev/berth/internal/atomicfile"
)

const (
	infoFile     = "info.json"
	fsDir        = "fs"
	unpackPrefix = ".unpack-"
	removePrefix = ".remove-"
)

// Info describes an unpacked layer. Size and Inodes count its fs directory
// as `du -sb` and `du --inodes` do (apparent sizes, directories and the fs
// directory itself included, hard links once); the info file is not
// counted.
type Info struct {
	ChainID digest.Digest `json:"chainID"`
	DiffID  digest.Digest `json:"diffID"`
	Size    int64         `json:"size"`
	Inodes  int64         `json:"inodes"`
}

// Store holds unpacked layers. It is safe for concurrent use; one process
// owns a root.
type Store struct {
	dir string

	mu    sync.Mutex
	calls map[digest.Digest]*call
}

// call is one unpack in progress that later callers of the same chain ID
// wait for.
type call struct {
	done chan struct{}
	info Info
	err  error
}

// Open opens (creating if needed) the layer store under root and removes
// unfinished unpacks and removals.
func Open(root string) (*Store, error) {
	dir := filepath.Join(root, "layers")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open layer store: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open layer store: %w", err)
	}
	s := &Store{dir: dir, calls: map[digest.Digest]*call{}}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if !strings.HasPrefix(e.Name(), ".") {
			if _, err := s.readInfo(p); err == nil || !(errdefs.IsNotFound(err) || errdefs.IsDataLoss(err)) {
				continue
			}
		}
		if err := os.RemoveAll(p); err != nil {
			return nil, fmt.Errorf("open layer store: remove unfinished %s: %w", e.Name(), err)
		}
	}
	return s, nil
}

func validate(what string, d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%s %q: %w: %w", what, d, errdefs.ErrInvalidArgument, err)
	}
	return nil
}

// Dir is the fs directory of a layer, the overlay lower directory.
func (s *Store) Dir(chainID digest.Digest) string {
	return filepath.Join(s.dir, chainID.Encoded(), fsDir)
}

// Info returns a layer's Info, or an error wrapping errdefs.ErrNotFound.
func (s *Store) Info(chainID digest.Digest) (Info, error) {
	if err := validate("chain ID", chainID); err != nil {
		return Info{}, err
	}
	return s.readInfo(filepath.Join(s.dir, chainID.Encoded()))
}

func (s *Store) readInfo(layerDir string) (Info, error) {
	b, err := os.ReadFile(filepath.Join(layerDir, infoFile))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("layer %s: %w", filepath.Base(layerDir), errdefs.ErrNotFound)
	}
	if err != nil {
		return Info{}, fmt.Errorf("read layer info: %w", err)
	}
	var info Info
	if err := json.Unmarshal(b, &info); err != nil {
		return Info{}, fmt.Errorf("read layer info %s: %w: %w", layerDir, errdefs.ErrDataLoss, err)
	}
	return info, nil
}

// Unpack unpacks the layer r (as stored: gzip, zstd or plain tar) as chain
// ID chainID, checking that the uncompressed stream has digest diffID. A
// layer already present is returned at once without reading r. Concurrent
// calls for one chain ID share one unpack; should that one fail, a waiting
// caller tries again with its own reader. A digest mismatch is
// errdefs.ErrDataLoss; a hostile layer errdefs.ErrInvalidArgument. Files
// get the layer's owners when the process is root, else its own.
func (s *Store) Unpack(ctx context.Context, chainID, diffID digest.Digest, r io.Reader) (Info, error) {
	if err := validate("chain ID", chainID); err != nil {
		return Info{}, err
	}
	if err := validate("diff ID", diffID); err != nil {
		return Info{}, err
	}
	for {
		if info, err := s.Info(chainID); err == nil {
			return info, nil
		} else if !errdefs.IsNotFound(err) {
			return Info{}, err
		}
		s.mu.Lock()
		c, running := s.calls[chainID]
		if !running {
			c = &call{done: make(chan struct{})}
			s.calls[chainID] = c
		}
		s.mu.Unlock()

		if running {
			select {
			case <-c.done:
			case <-ctx.Done():
				return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, ctx.Err())
			}
			if c.err == nil {
				return c.info, nil
			}
			if err := ctx.Err(); err != nil {
				return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
			}
			continue // the leader failed; try with our own reader
		}

		c.info, c.err = s.unpack(ctx, chainID, diffID, r)
		s.mu.Lock()
		delete(s.calls, chainID)
		s.mu.Unlock()
		close(c.done)
		return c.info, c.err
	}
}

func (s *Store) unpack(ctx context.Context, chainID, diffID digest.Digest, r io.Reader) (_ Info, retErr error) {
	if !diffID.Algorithm().Available() {
		return Info{}, fmt.Errorf("unpack layer %s: diff ID algorithm %s: %w", chainID, diffID.Algorithm(), errdefs.ErrNotImplemented)
	}
	tmp, err := os.MkdirTemp(s.dir, unpackPrefix+chainID.Encoded()[:12]+"-")
	if err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(tmp)
		}
	}()
	fs := filepath.Join(tmp, fsDir)
	// The fs dir is the container's "/" unless the layer says otherwise:
	// 0755 whatever the umask.
	if err := os.Mkdir(fs, 0o755); err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	if err := os.Chmod(fs, 0o755); err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}

	dr, err := unpack.Decompress(r)
	if err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	defer dr.Close()
	digester := diffID.Algorithm().Digester()
	tee := io.TeeReader(dr, digester.Hash())
	stats, err := unpack.Apply(ctx, fs, tee, unpack.Options{NoChown: os.Geteuid() != 0})
	if err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	// The tar reader stops at the end marker; the diff ID covers the
	// padding after it too.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: read to end: %w", chainID, err)
	}
	if got := digester.Digest(); got != diffID {
		return Info{}, fmt.Errorf("unpack layer %s: uncompressed content has digest %s, want diff ID %s: %w",
			chainID, got, diffID, errdefs.ErrDataLoss)
	}

	info := Info{ChainID: chainID, DiffID: diffID, Size: stats.Bytes, Inodes: stats.Inodes}
	if err := atomicfile.WriteJSON(filepath.Join(tmp, infoFile), info, 0o600); err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	final := filepath.Join(s.dir, chainID.Encoded())
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			// Present after all (unpacked outside this Store's calls).
			return s.readInfo(final)
		}
		return Info{}, fmt.Errorf("unpack layer %s: commit: %w", chainID, err)
	}
	renamed = true
	if err := atomicfile.SyncDir(s.dir); err != nil {
		return Info{}, fmt.Errorf("unpack layer %s: %w", chainID, err)
	}
	return info, nil
}

// Commit makes dir the layer chainID: dir must already be in lower-dir
// form (overlay whiteouts and opaque markers, as an overlay upper dir is)
// and on the store's file system, and diffID must be the digest of the tar
// the caller made of it (a build step's changes, say). dir is moved into
// place, not copied: afterwards it is gone from where it was. A layer
// already present wins and dir is removed; concurrent commits or unpacks of
// one chain ID leave one complete layer. Nothing is synced to disk (see
// the package doc): a build commits a layer per step.
func (s *Store) Commit(ctx context.Context, chainID, diffID digest.Digest, dir string) (Info, error) {
	if err := validate("chain ID", chainID); err != nil {
		return Info{}, err
	}
	if err := validate("diff ID", diffID); err != nil {
		return Info{}, err
	}
	if info, err := s.Info(chainID); err == nil {
		return info, os.RemoveAll(dir)
	}
	if err := ctx.Err(); err != nil {
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	tmp, err := os.MkdirTemp(s.dir, unpackPrefix+chainID.Encoded()[:12]+"-")
	if err != nil {
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(tmp)
		}
	}()
	if err := os.Rename(dir, filepath.Join(tmp, fsDir)); err != nil {
		return Info{}, fmt.Errorf("commit layer %s: move %s in: %w", chainID, dir, err)
	}
	stats, err := unpack.Usage(filepath.Join(tmp, fsDir))
	if err != nil {
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	info := Info{ChainID: chainID, DiffID: diffID, Size: stats.Bytes, Inodes: stats.Inodes}
	b, err := json.Marshal(info)
	if err != nil {
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, infoFile), b, 0o600); err != nil {
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	final := filepath.Join(s.dir, chainID.Encoded())
	if err := os.Rename(tmp, final); err != nil {
		if errors.Is(err, syscall.EEXIST) || errors.Is(err, syscall.ENOTEMPTY) {
			return s.readInfo(final)
		}
		return Info{}, fmt.Errorf("commit layer %s: %w", chainID, err)
	}
	renamed = true
	return info, nil
}

// Sync writes every committed layer to disk: the file system's dirty data
// (syncfs of the store's directory), so that layers committed unsynced
// before the call, their files, infos and renames, survive a power loss.
// The image store calls it once when a build's image gets its record, not
// at every step.
func (s *Store) Sync() error {
	f, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("sync layer store: %w", err)
	}
	defer f.Close()
	if err := unix.Syncfs(int(f.Fd())); err != nil {
		return fmt.Errorf("sync layer store: %w", err)
	}
	return nil
}

// Remove removes a layer; an absent one is not an error. The layer
// disappears at once (renamed away) even if deleting its files takes long
// or is interrupted.
func (s *Store) Remove(chainID digest.Digest) error {
	if err := validate("chain ID", chainID); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(s.dir, removePrefix)
	if err != nil {
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	// rename(2) may replace an empty directory (os.Rename refuses to).
	if err := unix.Rename(filepath.Join(s.dir, chainID.Encoded()), tmp); err != nil {
		os.Remove(tmp)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove layer %s: %w", chainID, err)
	}
	return nil
}

// List returns every complete layer.
func (s *Store) List() ([]Info, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("list layers: %w", err)
	}
	var out []Info
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") || !e.IsDir() {
			continue
		}
		info, err := s.readInfo(filepath.Join(s.dir, e.Name()))
		if errdefs.IsNotFound(err) {
			continue // removed meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("list layers: %w", err)
		}
		out = append(out, info)
	}
	return out, nil
}
