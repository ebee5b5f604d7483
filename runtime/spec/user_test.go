package spec

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestResolveUser(t *testing.T) {
	rootfs := fixtureRootfs(t)
	tests := []struct {
		spec       string
		policy     SupplementalGroupsPolicy
		uid, gid   uint32
		additional []uint32
	}{
		{"", GroupsMerge, 0, 0, []uint32{10}}, // root is in wheel
		{"root", GroupsStrict, 0, 0, nil},
		{"default-user", GroupsMerge, 1000, 1000, []uint32{50000, 50001}},
		{"default-user", GroupsStrict, 1000, 1000, nil},
		{"1000", GroupsMerge, 1000, 1000, []uint32{50000, 50001}}, // by uid, groups by the passwd name
		{"www-data", GroupsMerge, 33, 33, []uint32{100, 50001}},
		{"www-data:1004", GroupsMerge, 33, 1004, []uint32{100, 50001}},
		{"1003:1004", GroupsMerge, 1003, 1004, nil}, // not in passwd: no name, no groups
		{"4242", GroupsMerge, 4242, 0, nil},
		{"default-user:group-defined-in-image", GroupsStrict, 1000, 50000, nil},
		{"65534", GroupsMerge, 65534, 65534, nil},
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			uid, gid, add, err := ResolveUser(rootfs, tc.spec, tc.policy)
			if err != nil {
				t.Fatal(err)
			}
			if uid != tc.uid || gid != tc.gid || !slices.Equal(add, tc.additional) {
				t.Fatalf("got %d:%d %v, want %d:%d %v", uid, gid, add, tc.uid, tc.gid, tc.additional)
			}
		})
	}
}

func TestResolveUserWithoutEtc(t *testing.T) {
	rootfs := t.TempDir()
	uid, gid, add, err := ResolveUser(rootfs, "1234:5678", GroupsMerge)
	if err != nil || uid != 1234 || gid != 5678 || add != nil {
		t.Fatalf("got %d:%d %v %v", uid, gid, add, err)
	}
	_, _, _, err = ResolveUser(rootfs, "nobody", GroupsMerge)
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("named user without /etc/passwd: err = %v, want not found", err)
	}
}

func TestResolveUserMissingRootfs(t *testing.T) {
	_, _, _, err := ResolveUser(filepath.Join(t.TempDir(), "not-mounted"), "0", GroupsMerge)
	if !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), "rootfs") {
		t.Fatalf("err = %v, want a not-found rootfs", err)
	}
}

// An image may make /etc/passwd a symlink to anything; the lookup must stay
// inside the rootfs, whatever the link says.
func TestResolveUserSymlinkEscape(t *testing.T) {
	outside := t.TempDir()
	hostPasswd := filepath.Join(outside, "passwd")
	if err := os.WriteFile(hostPasswd, []byte("escapee:x:4242:4242::/:/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	hostGroup := filepath.Join(outside, "group")
	if err := os.WriteFile(hostGroup, []byte("hostgroup:x:4343:escapee\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct{ name, passwd, group string }{
		{"absolute", hostPasswd, hostGroup},
		{"relative", "../../../../../../../../.." + hostPasswd, "../../../../../../../../.." + hostGroup},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rootfs := t.TempDir()
			if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.passwd, filepath.Join(rootfs, "etc", "passwd")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(tc.group, filepath.Join(rootfs, "etc", "group")); err != nil {
				t.Fatal(err)
			}
			uid, gid, _, err := ResolveUser(rootfs, "escapee", GroupsMerge)
			if err == nil {
				t.Fatalf("resolved the host's user through a symlink: %d:%d", uid, gid)
			}
			if !errors.Is(err, errdefs.ErrNotFound) {
				t.Fatalf("err = %v, want not found", err)
			}
			_, _, add, err := ResolveUser(rootfs, "0", GroupsMerge)
			if err != nil || add != nil {
				t.Fatalf("numeric user: add=%v err=%v", add, err)
			}

			// The same link resolved inside the rootfs is followed.
			inside := filepath.Join(rootfs, hostPasswd)
			if err := os.MkdirAll(filepath.Dir(inside), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(inside, []byte("inside:x:7:7::/:/bin/sh\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			uid, gid, _, err = ResolveUser(rootfs, "inside", GroupsStrict)
			if err != nil || uid != 7 || gid != 7 {
				t.Fatalf("in-rootfs link target: %d:%d %v", uid, gid, err)
			}
		})
	}
}

func TestResolveUserRefusesFifo(t *testing.T) {
	rootfs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(filepath.Join(rootfs, "etc", "passwd")); err != nil {
		t.Fatalf("mkfifo: %v", err)
	}
	_, _, _, err := ResolveUser(rootfs, "anyone", GroupsMerge)
	if !errors.Is(err, errdefs.ErrInvalidArgument) || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("err = %v", err)
	}
}
