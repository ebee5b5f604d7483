package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func newTest(t *testing.T) (*Snapshotter, string, []string) {
	t.Helper()
	root := t.TempDir()
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	var lowers []string
	for _, n := range []string{"top", "mid", "base"} {
		d := filepath.Join(root, "layers", n, "fs")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		lowers = append(lowers, d)
	}
	return s, root, lowers
}

func TestPrepareMounts(t *testing.T) {
	s, root, lowers := newTest(t)
	mounts, err := s.Prepare("c1", lowers)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "snapshots", "c1")
	want := []string{"workdir=" + dir + "/work", "upperdir=" + dir + "/upper", "lowerdir=" + strings.Join(lowers, ":")}
	if s.index {
		want = append([]string{"index=off"}, want...)
	}
	if len(mounts) != 1 || mounts[0].Type != "overlay" || mounts[0].Source != "overlay" || !reflect.DeepEqual(mounts[0].Options, want) {
		t.Errorf("mounts = %+v, want overlay %v", mounts, want)
	}
	for _, d := range []string{"upper", "work"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v", d, err)
		}
	}
	again, err := s.Mounts("c1")
	if err != nil || !reflect.DeepEqual(again, mounts) {
		t.Errorf("Mounts = %+v, %v", again, err)
	}
	if _, err := s.Prepare("c1", lowers); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Prepare: %v", err)
	}

	// A fresh snapshotter on the same root knows the snapshot.
	s2, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	list, err := s2.List()
	if err != nil || len(list) != 1 || list[0].ID != "c1" || !reflect.DeepEqual(list[0].Lowers, lowers) || list[0].ReadOnly {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestViewAndScratch(t *testing.T) {
	s, root, lowers := newTest(t)
	m, err := s.View("v1", lowers[:1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []Mount{{Type: "bind", Source: lowers[0], Options: []string{"ro", "rbind"}}}; !reflect.DeepEqual(m, want) {
		t.Errorf("single-lower view = %+v", m)
	}
	m, err = s.View("v2", lowers, Options{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	if opts := strings.Join(m[0].Options, ","); m[0].Type != "overlay" || strings.Contains(opts, "upperdir") || !strings.Contains(opts, "lowerdir="+strings.Join(lowers, ":")) {
		t.Errorf("view = %+v", m)
	}
	if _, err := os.Stat(filepath.Join(root, "snapshots", "v2", "upper")); !os.IsNotExist(err) {
		t.Errorf("a view has an upper dir: %v", err)
	}
	m, err = s.Prepare("scratch", nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []Mount{{Type: "bind", Source: filepath.Join(root, "snapshots", "scratch", "upper"), Options: []string{"rw", "rbind"}}}; !reflect.DeepEqual(m, want) {
		t.Errorf("scratch = %+v", m)
	}
	if _, err := s.View("v3", nil, Options{}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("view of nothing: %v", err)
	}
}

func TestCreateRefused(t *testing.T) {
	s, root, lowers := newTest(t)
	many := make([]string, 60)
	for i := range many {
		many[i] = filepath.Join(root, "layers", fmt.Sprintf("%064d", i), "fs")
		os.MkdirAll(many[i], 0o755)
	}
	for _, c := range []struct {
		id     string
		lowers []string
		class  func(error) bool
	}{
		{"", lowers, errdefs.IsInvalidArgument},
		{"../x", lowers, errdefs.IsInvalidArgument},
		{".new-x", lowers, errdefs.IsInvalidArgument},
		{"ok", []string{"relative/fs"}, errdefs.IsInvalidArgument},
		{"ok", []string{root + "/a:b"}, errdefs.IsInvalidArgument},
		{"ok", []string{root + "/missing"}, errdefs.IsNotFound},
		{"ok", many, errdefs.IsNotImplemented},
	} {
		_, err := s.Prepare(c.id, c.lowers)
		if err == nil || !c.class(err) {
			t.Errorf("Prepare(%q, %d lowers): %v", c.id, len(c.lowers), err)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(root, "snapshots"))
	if len(entries) != 0 {
		t.Errorf("refused snapshots left %v", entries)
	}
}

func TestRemoveAndCleanup(t *testing.T) {
	s, root, lowers := newTest(t)
	if _, err := s.Prepare("c1", lowers); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "snapshots", "c1", "upper", "file"), []byte("x"), 0o644)
	for _, leftover := range []string{".new-1/upper", ".rm-2/upper"} {
		os.MkdirAll(filepath.Join(root, "snapshots", leftover), 0o755)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 1 {
		t.Errorf("after New: %v", entries)
	}
	if err := s.Remove("c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove("c1"); err != nil {
		t.Errorf("Remove of an absent snapshot: %v", err)
	}
	if _, err := s.Stat("c1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Stat after Remove: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "snapshots")); len(entries) != 0 {
		t.Errorf("after Remove: %v", entries)
	}
}

// TestEphemeralRecordLost: an ephemeral snapshot (a build step's) whose
// record a power loss left empty is removed by New, one with its record
// is kept; a durable snapshot's unreadable record is still an error of
// List, not a removal.
func TestEphemeralRecordLost(t *testing.T) {
	s, root, lowers := newTest(t)
	for _, id := range []string{"eph-lost", "eph-ok"} {
		if _, err := s.PrepareDiffable(id, lowers, Options{Ephemeral: true}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Prepare("durable", lowers); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "snapshots")
	if err := os.Truncate(filepath.Join(dir, "eph-lost", recordFile), 0); err != nil {
		t.Fatal(err)
	}
	s, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "eph-lost")); !os.IsNotExist(err) {
		t.Fatalf("the ephemeral snapshot without a record is still there: %v", err)
	}
	infos, err := s.List()
	if err != nil || len(infos) != 2 {
		t.Fatalf("list: %+v %v", infos, err)
	}
	if err := os.Truncate(filepath.Join(dir, "durable", recordFile), 0); err != nil {
		t.Fatal(err)
	}
	if s, err = New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := s.List(); !errdefs.IsDataLoss(err) {
		t.Fatalf("a durable snapshot's empty record: %v, want data loss", err)
	}
}
