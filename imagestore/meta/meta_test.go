package meta

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
)

func open(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func img(s string) Image {
	return Image{ID: digest.FromString(s), ManifestDigest: digest.FromString("m" + s), Config: []byte(`{"architecture":"amd64"}`), Pulled: time.Unix(100, 0).UTC()}
}

func TestTagsMoveAndPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := open(t, path)
	a, b := img("a"), img("b")
	a.RepoDigests = []string{"docker.io/library/a@" + string(a.ManifestDigest)}
	if err := db.Put(a, []string{"docker.io/library/a:latest", "docker.io/library/x:1"}); err != nil {
		t.Fatal(err)
	}
	if err := db.Put(b, []string{"docker.io/library/b:latest"}); err != nil {
		t.Fatal(err)
	}
	// Move x:1 from a to b.
	if err := db.Tag("docker.io/library/x:1", b.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.Tag("docker.io/library/x:2", digest.FromString("nope")); !errdefs.IsNotFound(err) {
		t.Fatalf("tag to unknown image: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db = open(t, path)
	defer db.Close()
	ra, err := db.Get(a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ra.Tags, []string{"docker.io/library/a:latest"}) || len(ra.RepoDigests) != 1 || string(ra.Config) != `{"architecture":"amd64"}` {
		t.Fatalf("a after reopen: %+v", ra)
	}
	rb, _ := db.Get(b.ID)
	if !slices.Equal(rb.Tags, []string{"docker.io/library/b:latest", "docker.io/library/x:1"}) {
		t.Fatalf("b tags: %v", rb.Tags)
	}
	if id, err := db.LookupTag("docker.io/library/x:1"); err != nil || id != b.ID {
		t.Fatalf("lookup x:1 = %s, %v", id, err)
	}
	list, err := db.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %d %v", len(list), err)
	}
}

func TestPutMergesAndKeepsFirstPull(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	a := img("a")
	a.RepoDigests = []string{"r1@" + string(a.ManifestDigest)}
	if err := db.Put(a, nil); err != nil {
		t.Fatal(err)
	}
	a2 := img("a")
	a2.Pulled = time.Unix(500, 0).UTC()
	a2.RepoDigests = []string{"r2@" + string(a.ManifestDigest)}
	if err := db.Put(a2, nil); err != nil {
		t.Fatal(err)
	}
	r, _ := db.Get(a.ID)
	if !r.Pulled.Equal(time.Unix(100, 0)) || len(r.RepoDigests) != 2 {
		t.Fatalf("merged record: %+v", r.Image)
	}
}

func TestUntagLastDeletes(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	a := img("a")
	if err := db.Put(a, []string{"t1", "t2", "t3"}); err != nil {
		t.Fatal(err)
	}
	for i, tag := range []string{"t1", "t2"} {
		u, err := db.Untag(tag)
		if err != nil || u.Deleted || u.ID != a.ID {
			t.Fatalf("untag %d: %+v %v", i, u, err)
		}
	}
	if _, err := db.Untag("t1"); !errdefs.IsNotFound(err) {
		t.Fatalf("untag twice: %v", err)
	}
	u, err := db.Untag("t3")
	if err != nil || !u.Deleted {
		t.Fatalf("untag last: %+v %v", u, err)
	}
	if _, err := db.Get(a.ID); !errdefs.IsNotFound(err) {
		t.Fatalf("get after last untag: %v", err)
	}
}

func TestRemoveRepoDigestAndDelete(t *testing.T) {
	db := open(t, filepath.Join(t.TempDir(), "meta.db"))
	defer db.Close()
	a := img("a")
	a.RepoDigests = []string{"r@x"}
	if err := db.Put(a, nil); err != nil {
		t.Fatal(err)
	}
	u, err := db.RemoveRepoDigest(a.ID, "r@x")
	if err != nil || !u.Deleted {
		t.Fatalf("remove only repo digest: %+v %v", u, err)
	}
	b := img("b")
	if err := db.Put(b, []string{"t1", "t2"}); err != nil {
		t.Fatal(err)
	}
	tags, err := db.Delete(b.ID)
	if err != nil || len(tags) != 2 {
		t.Fatalf("delete: %v %v", tags, err)
	}
	if _, err := db.LookupTag("t1"); !errdefs.IsNotFound(err) {
		t.Fatalf("tag survived delete: %v", err)
	}
}

func TestSecondOpenTimesOut(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db := open(t, path)
	defer db.Close()
	_, err := Open(path, Options{Timeout: 100 * time.Millisecond})
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("second open: %v", err)
	}
}
