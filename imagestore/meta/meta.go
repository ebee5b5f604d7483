// Package meta keeps the image store's metadata in a bbolt database: image
// records keyed by image ID (the config digest), and tags ("name:tag" ->
// image ID) indexed both ways. Every change is one bbolt transaction, so a
// kill -9 at any moment leaves either the old or the new state on disk.
package meta

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketImages = []byte("images")
	bucketTags   = []byte("tags")       // tag -> image ID
	bucketByImg  = []byte("imagetags")  // image ID "\x00" tag -> nothing
	bucketCache  = []byte("buildcache") // cache key -> CacheRecord
)

// Layer is one layer of an image record.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	DiffID    digest.Digest `json:"diffID"`
	ChainID   digest.Digest `json:"chainID"`
	// UnpackedSize is the layer's size once unpacked.
	UnpackedSize int64 `json:"unpackedSize"`
}

// Image is one image record. Tags are not part of it: they live in their
// own bucket so that moving a tag touches only the tag index.
type Image struct {
	ID                digest.Digest   `json:"id"`
	ManifestDigest    digest.Digest   `json:"manifestDigest"`
	ManifestMediaType string          `json:"manifestMediaType"`
	Size              int64           `json:"size"`
	Layers            []Layer         `json:"layers"`
	Config            json.RawMessage `json:"config"`
	RepoDigests       []string        `json:"repoDigests,omitempty"`
	Pinned            bool            `json:"pinned,omitempty"`
	Pulled            time.Time       `json:"pulled"`
}

// Record is an image with its tags.
type Record struct {
	Image
	Tags []string
}

// Options configure Open.
type Options struct {
	// Timeout bounds the wait for the database's file lock; a second
	// process opening the same root gets a clear error instead of hanging.
	Timeout time.Duration
}

// DB is the metadata database.
type DB struct {
	db *bolt.DB
}

// Open opens (creating if needed) the database file at path.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open metadata %s: %w: locked by another process: %w", path, errdefs.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("open metadata %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketTags, bucketByImg, bucketCache} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("initialize metadata %s: %w", path, err)
	}
	return &DB{db: db}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

func byImgKey(id digest.Digest, tag string) []byte {
	return []byte(string(id) + "\x00" + tag)
}

func getImage(tx *bolt.Tx, id digest.Digest) (Image, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return Image{}, fmt.Errorf("image %s: %w", id, errdefs.ErrNotFound)
	}
	var img Image
	if err := json.Unmarshal(v, &img); err != nil {
		return Image{}, fmt.Errorf("decode image record %s: %w: %w", id, errdefs.ErrDataLoss, err)
	}
	return img, nil
}

func putImage(tx *bolt.Tx, img Image) error {
	v, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("encode image record %s: %w", img.ID, err)
	}
	return tx.Bucket(bucketImages).Put([]byte(img.ID), v)
}

func tagsOf(tx *bolt.Tx, id digest.Digest) []string {
	var tags []string
	prefix := []byte(string(id) + "\x00")
	c := tx.Bucket(bucketByImg).Cursor()
	for k, _ := c.Seek(prefix); k != nil && len(k) >= len(prefix) && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
		tags = append(tags, string(k[len(prefix):]))
	}
	return tags
}

// setTag points tag at id, removing it from the image it pointed at before.
func setTag(tx *bolt.Tx, tag string, id digest.Digest) error {
	tb := tx.Bucket(bucketTags)
	if old := tb.Get([]byte(tag)); old != nil {
		if err := tx.Bucket(bucketByImg).Delete(byImgKey(digest.Digest(old), tag)); err != nil {
			return err
		}
	}
	if err := tb.Put([]byte(tag), []byte(id)); err != nil {
		return err
	}
	return tx.Bucket(bucketByImg).Put(byImgKey(id, tag), nil)
}

// Put stores img (merging its repo digests with the stored record's and
// keeping the first Pulled time and the Pinned flag) and points tags at it,
// all in one transaction.
func (d *DB) Put(img Image, tags []string) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		old, err := getImage(tx, img.ID)
		switch {
		case err == nil:
			for _, rd := range old.RepoDigests {
				if !slices.Contains(img.RepoDigests, rd) {
					img.RepoDigests = append(img.RepoDigests, rd)
				}
			}
			if !old.Pulled.IsZero() {
				img.Pulled = old.Pulled
			}
			img.Pinned = img.Pinned || old.Pinned
		case !errdefs.IsNotFound(err):
			return err
		}
		slices.Sort(img.RepoDigests)
		if err := putImage(tx, img); err != nil {
			return err
		}
		for _, t := range tags {
			if err := setTag(tx, t, img.ID); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store image %s: %w", img.ID, err)
	}
	return nil
}

// Get returns the record of image id.
func (d *DB) Get(id digest.Digest) (Record, error) {
	var r Record
	err := d.db.View(func(tx *bolt.Tx) error {
		img, err := getImage(tx, id)
		if err != nil {
			return err
		}
		r = Record{Image: img, Tags: tagsOf(tx, id)}
		return nil
	})
	return r, err
}

// List returns every record, ordered by ID.
func (d *DB) List() ([]Record, error) {
	var out []Record
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(k, v []byte) error {
			img, err := getImage(tx, digest.Digest(k))
			if err != nil {
				return err
			}
			out = append(out, Record{Image: img, Tags: tagsOf(tx, img.ID)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	return out, nil
}

// LookupTag returns the image a tag points at.
func (d *DB) LookupTag(tag string) (digest.Digest, error) {
	var id digest.Digest
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketTags).Get([]byte(tag))
		if v == nil {
			return fmt.Errorf("tag %s: %w", tag, errdefs.ErrNotFound)
		}
		id = digest.Digest(v)
		return nil
	})
	return id, err
}

// Tag points tag at the existing image id; a tag that pointed elsewhere
// moves in the same transaction.
func (d *DB) Tag(tag string, id digest.Digest) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		if _, err := getImage(tx, id); err != nil {
			return err
		}
		return setTag(tx, tag, id)
	})
}

// Untagged is what Untag and RemoveRepoDigest did.
type Untagged struct {
	ID digest.Digest
	// Deleted is set when the image lost its last reference and its record
	// was deleted with it.
	Deleted bool
	// RepoDigests are the repo digests that went with a deleted record.
	RepoDigests []string
}

// Untag removes tag. When that was the image's last tag the image record
// is deleted too (its repo digests go with it, as docker does), in the same
// transaction.
func (d *DB) Untag(tag string) (Untagged, error) {
	var u Untagged
	err := d.db.Update(func(tx *bolt.Tx) error {
		tb := tx.Bucket(bucketTags)
		v := tb.Get([]byte(tag))
		if v == nil {
			return fmt.Errorf("tag %s: %w", tag, errdefs.ErrNotFound)
		}
		u.ID = digest.Digest(v)
		if err := tb.Delete([]byte(tag)); err != nil {
			return err
		}
		if err := tx.Bucket(bucketByImg).Delete(byImgKey(u.ID, tag)); err != nil {
			return err
		}
		if len(tagsOf(tx, u.ID)) > 0 {
			return nil
		}
		img, err := getImage(tx, u.ID)
		if err != nil {
			return err
		}
		u.Deleted, u.RepoDigests = true, img.RepoDigests
		return tx.Bucket(bucketImages).Delete([]byte(u.ID))
	})
	return u, err
}

// RemoveRepoDigest removes one repo digest ("name@sha256:...") of image
// id. When the image has no tag and no repo digest left its record is
// deleted in the same transaction.
func (d *DB) RemoveRepoDigest(id digest.Digest, repoDigest string) (Untagged, error) {
	u := Untagged{ID: id}
	err := d.db.Update(func(tx *bolt.Tx) error {
		img, err := getImage(tx, id)
		if err != nil {
			return err
		}
		i := slices.Index(img.RepoDigests, repoDigest)
		if i < 0 {
			return fmt.Errorf("repo digest %s: %w", repoDigest, errdefs.ErrNotFound)
		}
		img.RepoDigests = slices.Delete(img.RepoDigests, i, i+1)
		if len(img.RepoDigests) == 0 && len(tagsOf(tx, id)) == 0 {
			u.Deleted = true
			return tx.Bucket(bucketImages).Delete([]byte(id))
		}
		return putImage(tx, img)
	})
	return u, err
}

// Delete removes image id and every tag pointing at it in one transaction
// and returns the tags it had.
func (d *DB) Delete(id digest.Digest) ([]string, error) {
	var tags []string
	err := d.db.Update(func(tx *bolt.Tx) error {
		if _, err := getImage(tx, id); err != nil {
			return err
		}
		tags = tagsOf(tx, id)
		for _, t := range tags {
			if err := tx.Bucket(bucketTags).Delete([]byte(t)); err != nil {
				return err
			}
			if err := tx.Bucket(bucketByImg).Delete(byImgKey(id, t)); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketImages).Delete([]byte(id))
	})
	return tags, err
}

// SetPinned sets or clears the pinned flag of image id.
func (d *DB) SetPinned(id digest.Digest, pinned bool) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		img, err := getImage(tx, id)
		if err != nil {
			return err
		}
		img.Pinned = pinned
		return putImage(tx, img)
	})
}

// CacheRecord is one build cache entry: the state a build step produced
// (its layers, base first, and the image config at that point), found
// again by the step's cache key.
type CacheRecord struct {
	Key    digest.Digest   `json:"key"`
	Layers []Layer         `json:"layers"`
	Config json.RawMessage `json:"config"`
	// Created is when the step ran; LastUsed when a build last took it.
	Created  time.Time `json:"created"`
	LastUsed time.Time `json:"lastUsed"`
}

// PutCaches stores (or replaces) records in one transaction.
func (d *DB) PutCaches(recs []CacheRecord) error {
	err := d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCache)
		for _, rec := range recs {
			v, err := json.Marshal(rec)
			if err != nil {
				return fmt.Errorf("encode cache record %s: %w", rec.Key, err)
			}
			if err := b.Put([]byte(rec.Key), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store cache records: %w", err)
	}
	return nil
}

// TouchCaches sets LastUsed of the records of keys (absent ones are
// skipped) in one transaction.
func (d *DB) TouchCaches(keys []digest.Digest, at time.Time) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCache)
		for _, k := range keys {
			v := b.Get([]byte(k))
			if v == nil {
				continue
			}
			var rec CacheRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode cache record %s: %w: %w", k, errdefs.ErrDataLoss, err)
			}
			rec.LastUsed = at
			nv, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			if err := b.Put([]byte(k), nv); err != nil {
				return err
			}
		}
		return nil
	})
}

// GetCache returns the record of key; errdefs.ErrNotFound if there is none.
func (d *DB) GetCache(key digest.Digest) (CacheRecord, error) {
	var rec CacheRecord
	err := d.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketCache).Get([]byte(key))
		if v == nil {
			return fmt.Errorf("cache record %s: %w", key, errdefs.ErrNotFound)
		}
		if err := json.Unmarshal(v, &rec); err != nil {
			return fmt.Errorf("decode cache record %s: %w: %w", key, errdefs.ErrDataLoss, err)
		}
		return nil
	})
	return rec, err
}

// ListCache returns every cache record, ordered by key.
func (d *DB) ListCache() ([]CacheRecord, error) {
	var out []CacheRecord
	err := d.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCache).ForEach(func(k, v []byte) error {
			var rec CacheRecord
			if err := json.Unmarshal(v, &rec); err != nil {
				return fmt.Errorf("decode cache record %s: %w: %w", k, errdefs.ErrDataLoss, err)
			}
			out = append(out, rec)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list cache records: %w", err)
	}
	return out, nil
}

// DeleteCache removes the records of keys in one transaction; absent ones
// are skipped.
func (d *DB) DeleteCache(keys []digest.Digest) error {
	return d.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketCache)
		for _, k := range keys {
			if err := b.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
}
