package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berth-dev/berth/imagestore/unpack"
)

// cacheMounts are the directories of RUN --mount=type=cache, kept under
// the builder's root between builds (and restarts) until a prune:
//
//	<dir>/<sha256 of the cache id>/data
//
// Sharing follows BuildKit: "shared" lets concurrent RUNs use one dir,
// "locked" makes them take turns, "private" gives a RUN that finds the dir
// busy a fresh one of its own (dropped afterwards).
type cacheMounts struct {
	dir string

	mu    sync.Mutex
	users map[string]int
	locks map[string]*sync.Mutex
}

func newCacheMounts(dir string) (*cacheMounts, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	// A ".new-" dir is a cache dir whose creation a crash cut short.
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".") {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
	return &cacheMounts{dir: dir, users: map[string]int{}, locks: map[string]*sync.Mutex{}}, nil
}

// cacheSpec describes one cache mount.
type cacheSpec struct {
	id      string
	sharing string // shared, private, locked
	mode    os.FileMode
	uid     int
	gid     int
	// seed fills a new cache dir (from=): a directory to copy.
	seed string
}

// acquire returns the directory to mount and a release func. tmp makes a
// throwaway dir for a busy private cache.
func (c *cacheMounts) acquire(ctx context.Context, sp cacheSpec, tmp func() (string, error)) (string, func(), error) {
	sum := sha256.Sum256([]byte(sp.id))
	key := hex.EncodeToString(sum[:])
	dir := filepath.Join(c.dir, key)
	c.mu.Lock()
	busy := c.users[key] > 0
	lock := c.locks[key]
	if lock == nil {
		lock = &sync.Mutex{}
		c.locks[key] = lock
	}
	if sp.sharing == "private" && busy {
		c.mu.Unlock()
		d, err := tmp()
		if err != nil {
			return "", nil, err
		}
		if err := fillCacheDir(ctx, d, sp); err != nil {
			return "", nil, err
		}
		return d, func() { os.RemoveAll(d) }, nil
	}
	c.users[key]++
	c.mu.Unlock()
	release := func() {
		c.mu.Lock()
		c.users[key]--
		if c.users[key] == 0 {
			delete(c.users, key)
		}
		c.mu.Unlock()
	}
	if sp.sharing == "locked" {
		lock.Lock()
		unlockRelease := release
		release = func() { lock.Unlock(); unlockRelease() }
	}
	data := filepath.Join(dir, "data")
	c.mu.Lock()
	_, err := os.Stat(data)
	if errors.Is(err, os.ErrNotExist) {
		err = c.create(ctx, dir, sp)
	}
	c.mu.Unlock()
	if err != nil {
		release()
		return "", nil, fmt.Errorf("cache mount %s: %w", sp.id, err)
	}
	return data, release, nil
}

// create makes a cache dir under a temporary name and renames it in.
func (c *cacheMounts) create(ctx context.Context, dir string, sp cacheSpec) error {
	tmp, err := os.MkdirTemp(c.dir, ".new-")
	if err != nil {
		return err
	}
	data := filepath.Join(tmp, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := fillCacheDir(ctx, data, sp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp)
		if _, serr := os.Stat(filepath.Join(dir, "data")); serr == nil {
			return nil
		}
		return err
	}
	return nil
}

func fillCacheDir(ctx context.Context, data string, sp cacheSpec) error {
	if sp.seed != "" {
		if err := copyDirContents(ctx, sp.seed, data); err != nil {
			return err
		}
	}
	if err := os.Chown(data, sp.uid, sp.gid); err != nil {
		return err
	}
	return os.Chmod(data, sp.mode)
}

// prune removes the cache dirs no RUN uses and returns the bytes freed.
func (c *cacheMounts) prune() (int64, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return 0, 0, err
	}
	var freed int64
	var n int
	var errs []error
	for _, e := range ents {
		if c.users[e.Name()] > 0 {
			continue
		}
		p := filepath.Join(c.dir, e.Name())
		if u, err := unpack.Usage(p); err == nil {
			freed += u.Bytes
		}
		if err := os.RemoveAll(p); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return freed, n, errors.Join(errs...)
}
