package engine

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"

	"github.com/berth-dev/berth/runtime/spec"
)

func TestParseBind(t *testing.T) {
	for _, c := range []struct {
		raw  string
		want MountPoint
		err  string
	}{
		{raw: "/anon", want: mp(mount.TypeVolume, "", "", "/anon", "", true)},
		{raw: "data:/data", want: mp(mount.TypeVolume, "data", "", "/data", "", true)},
		{raw: "data:/data:ro", want: mp(mount.TypeVolume, "data", "", "/data", "ro", false)},
		{raw: "/host:/c", want: mp(mount.TypeBind, "", "/host", "/c", "", true)},
		{raw: "/host/:/c/./x:ro,rshared", want: mp(mount.TypeBind, "", "/host", "/c/x", "ro,rshared", false)},
		{raw: "/host:/c:z", want: mp(mount.TypeBind, "", "/host", "/c", "z", true)},
		{raw: "foo/bar:/x", err: `create foo/bar: "foo/bar" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`},
		{raw: "./rel:/x", err: `"./rel" includes invalid characters`},
		{raw: "v:/x:zz", err: "invalid mode: zz"},
		{raw: "v:/x:ro,rw", err: "invalid mode: ro,rw"},
		{raw: "/foo:rw", err: "invalid volume specification: '/foo:rw'"},
		{raw: "v:rel", err: "invalid mount path: 'rel' mount path must be absolute"},
		{raw: "v:/", err: "destination can't be '/'"},
		{raw: ":/x", err: "invalid volume specification"},
		{raw: "a:b:c:d", err: "invalid volume specification"},
		{raw: "v:/x:rshared", err: "propagation mode is only valid for bind mounts"},
		{raw: "x:/y", err: "volume name is too short"},
	} {
		got, err := parseBind(c.raw)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !errdefs.IsInvalidArgument(err) {
				t.Errorf("parseBind(%q) = %+v, %v; want a 400 with %q", c.raw, got, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseBind(%q): %v", c.raw, err)
			continue
		}
		if got.Type != c.want.Type || got.Name != c.want.Name || got.Source != c.want.Source || got.Destination != c.want.Destination || got.Mode != c.want.Mode || got.RW != c.want.RW {
			t.Errorf("parseBind(%q) = %+v, want %+v", c.raw, got.MountPoint, c.want.MountPoint)
		}
		if got.Type == mount.TypeVolume && got.Anonymous != (c.want.Name == "") {
			t.Errorf("parseBind(%q): anonymous %v", c.raw, got.Anonymous)
		}
	}
}

func mp(typ mount.Type, name, src, dst, mode string, rw bool) MountPoint {
	m := MountPoint{}
	m.Type, m.Name, m.Source, m.Destination, m.Mode, m.RW = typ, name, src, dst, mode, rw
	return m
}

func TestParseMount(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		m   mount.Mount
		err string
	}{
		{m: mount.Mount{Type: "bind", Source: dir, Target: "/x"}},
		{m: mount.Mount{Type: "bind", Source: dir + "/missing", Target: "/x"}, err: "bind source path does not exist: " + dir + "/missing"},
		{m: mount.Mount{Type: "bind", Source: dir + "/missing", Target: "/x", BindOptions: &mount.BindOptions{CreateMountpoint: true}}},
		{m: mount.Mount{Type: "bind", Source: "rel", Target: "/x"}, err: "invalid mount path: 'rel' mount path must be absolute"},
		{m: mount.Mount{Type: "bind", Target: "/x"}, err: "field Source must not be empty"},
		{m: mount.Mount{Type: "bind", Source: dir, Target: "/x", BindOptions: &mount.BindOptions{Propagation: "sideways"}}, err: "invalid propagation mode: sideways"},
		{m: mount.Mount{Type: "volume", Target: "/x", BindOptions: &mount.BindOptions{}}, err: "field BindOptions must not be specified"},
		{m: mount.Mount{Type: "volume", Target: "/x", VolumeOptions: &mount.VolumeOptions{Subpath: "a"}}, err: "must not set Subpath when using anonymous volumes"},
		{m: mount.Mount{Type: "volume", Source: "v1", Target: "/x", VolumeOptions: &mount.VolumeOptions{Subpath: "../a"}}, err: "subpath must be a relative path within the volume"},
		{m: mount.Mount{Type: "volume", Source: "v1", Target: "/x", VolumeOptions: &mount.VolumeOptions{DriverConfig: &mount.Driver{Name: "nfsplugin"}}}, err: `plugin "nfsplugin" not found`},
		{m: mount.Mount{Type: "tmpfs", Source: "x", Target: "/x"}, err: "field Source must not be specified"},
		{m: mount.Mount{Type: "tmpfs", Target: "/x", TmpfsOptions: &mount.TmpfsOptions{Options: [][]string{{"suid"}}}}, err: "invalid option: suid"},
		{m: mount.Mount{Type: "tmpfs", Target: "/x", TmpfsOptions: &mount.TmpfsOptions{SizeBytes: 1 << 20, Mode: 0o1777}}},
		{m: mount.Mount{Type: "image", Source: "busybox", Target: "/x", ImageOptions: &mount.ImageOptions{Subpath: "etc"}}},
		{m: mount.Mount{Type: "image", Target: "/x"}, err: "field Source must not be empty"},
		{m: mount.Mount{Type: "image", Source: "busybox", Target: "/x", ImageOptions: &mount.ImageOptions{Subpath: "/etc"}}, err: "subpath must be a relative path"},
		{m: mount.Mount{Type: "volume", Source: "v", Target: "/x", ImageOptions: &mount.ImageOptions{}}, err: "field ImageOptions must not be specified"},
		{m: mount.Mount{Type: "bind", Source: dir, Target: "/x", BindOptions: &mount.BindOptions{ReadOnlyNonRecursive: true}}, err: "options conflict: Writable && ReadOnlyNonRecursive"},
		{m: mount.Mount{Type: "bind", Source: dir, Target: "/x", ReadOnly: true, BindOptions: &mount.BindOptions{ReadOnlyNonRecursive: true, ReadOnlyForceRecursive: true}}, err: "options conflict: ReadOnlyNonRecursive && ReadOnlyForceRecursive"},
		{m: mount.Mount{Type: "weird", Target: "/x"}, err: "mount type unknown"},
		{m: mount.Mount{Type: "volume", Source: "v", Target: ""}, err: "field Target must not be empty"},
	} {
		got, err := parseMount(c.m)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("parseMount(%+v) = %v; want %q", c.m, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseMount(%+v): %v", c.m, err)
		}
		if c.m.Type == "tmpfs" && c.m.TmpfsOptions != nil && strings.Join(got.TmpfsOptions, ",") != "mode=1777,size=1m" {
			t.Errorf("tmpfs options %v", got.TmpfsOptions)
		}
	}
}

// TestPlanMounts: --mount, -v, --tmpfs and the VOLUMEs of config and image
// combine, VOLUMEs already mounted are skipped, a destination may appear
// once.
func TestPlanMounts(t *testing.T) {
	cfg := &container.Config{Volumes: map[string]struct{}{"/data": {}, "/cache": {}, "/etc/app": {}}}
	hc := &container.HostConfig{
		Binds:  []string{"named:/data", "/host:/h:ro"},
		Tmpfs:  map[string]string{"/run": "size=1m,exec"},
		Mounts: []mount.Mount{{Type: "volume", Source: "mv", Target: "/etc/app"}},
	}
	mps, err := planMounts(cfg, hc, nil)
	if err != nil {
		t.Fatal(err)
	}
	var dsts []string
	anon := 0
	for _, m := range mps {
		dsts = append(dsts, m.Destination)
		if m.Anonymous {
			anon++
		}
	}
	slices.Sort(dsts)
	if strings.Join(dsts, " ") != "/cache /data /etc/app /h /run" || anon != 1 {
		t.Errorf("planned %v with %d anonymous volumes", dsts, anon)
	}
	hc.Binds = append(hc.Binds, "/other:/h")
	if _, err := planMounts(cfg, hc, nil); err == nil || !strings.Contains(err.Error(), "Duplicate mount point: /h") {
		t.Errorf("duplicate destination: %v", err)
	}
}

// TestVolumesFromPlan: the mounts of --volumes-from give way to -v and
// --mount at the same destination and cover the image's VOLUMEs.
func TestVolumesFromPlan(t *testing.T) {
	from := func(dst, name string) MountPoint {
		x := MountPoint{From: "src", NoCopy: true}
		x.Type, x.Destination, x.Name, x.RW = mount.TypeVolume, dst, name, true
		return x
	}
	cfg := &container.Config{Volumes: map[string]struct{}{"/data": {}, "/img": {}}}
	hc := &container.HostConfig{Binds: []string{"mine:/b"}}
	mps, err := planMounts(cfg, hc, []MountPoint{from("/data", "shared"), from("/b", "theirs")})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, m := range mps {
		got[m.Destination] = m.Name
		if m.Anonymous {
			got[m.Destination] = "anonymous"
		}
	}
	want := map[string]string{"/b": "mine", "/data": "shared", "/img": "anonymous"}
	if !maps.Equal(got, want) {
		t.Errorf("planned %v, want %v", got, want)
	}
}

func TestParseVolumesFrom(t *testing.T) {
	for _, c := range []struct {
		in, ref, mode, err string
	}{
		{"data", "data", "rw", ""},
		{"data:ro", "data", "ro", ""},
		{"data:rw,z", "data", "rw,z", ""},
		{"", "", "", "volumes-from specification cannot be an empty string"},
		{"data:rshared", "", "", "invalid mode: rshared"},
		{"data:nocopy", "", "", "invalid mode: nocopy"},
		{"data:bogus", "", "", "invalid mode: bogus"},
	} {
		ref, mode, err := parseVolumesFrom(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err || !errdefs.IsInvalidArgument(err) {
				t.Errorf("%q: %v, want %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || ref != c.ref || mode != c.mode {
			t.Errorf("%q: %q %q %v", c.in, ref, mode, err)
		}
	}
}

func TestSpecMounts(t *testing.T) {
	m := func(typ mount.Type, src, dst string, rw bool, prop mount.Propagation) MountPoint {
		x := MountPoint{}
		x.Type, x.Source, x.Destination, x.RW, x.Propagation = typ, src, dst, rw, prop
		return x
	}
	tmp := m(mount.TypeTmpfs, "", "/t", true, "")
	tmp.TmpfsOptions = []string{"size=1m", "exec"}
	sub := m(mount.TypeVolume, "/vol/_data", "/sub", true, "")
	sub.Subpath = "a/b"
	roNR := m(mount.TypeBind, "/ro2", "/ro2", false, "")
	roNR.ReadOnlyNonRecursive = true
	got, err := specMounts([]MountPoint{
		m(mount.TypeBind, "/host", "/c", false, mount.PropagationRShared),
		m(mount.TypeVolume, "/vol/_data", "/v", true, ""),
		tmp, sub,
		m(mount.TypeBind, "/ro", "/ro", false, ""),
		roNR,
		m(mount.TypeBind, "/s", "/s", true, mount.PropagationSlave),
	}, true)
	if err != nil {
		t.Fatal(err)
	}
	if b := got[0]; b.Type != "bind" || b.Source != "/host" || !b.ReadOnly || b.Propagation != spec.PropagationBidirectional || b.RecursiveReadOnly || b.NonRecursivePropagation {
		t.Errorf("bind %+v", b)
	}
	if b := got[4]; !b.ReadOnly || !b.RecursiveReadOnly {
		t.Errorf("read-only bind where the kernel can: %+v, want recursively read-only", b)
	}
	if b := got[5]; !b.ReadOnly || b.RecursiveReadOnly {
		t.Errorf("read-only bind, ReadOnlyNonRecursive: %+v", b)
	}
	if b := got[6]; b.Propagation != spec.PropagationHostToContainer || !b.NonRecursivePropagation {
		t.Errorf("slave (not rslave) bind: %+v", b)
	}
	old, err := specMounts([]MountPoint{m(mount.TypeBind, "/ro", "/ro", false, "")}, false)
	if err != nil || old[0].RecursiveReadOnly {
		t.Errorf("read-only bind on an old kernel: %+v %v", old, err)
	}
	force := m(mount.TypeBind, "/ro", "/ro", false, "")
	force.ReadOnlyForceRecursive = true
	if _, err := specMounts([]MountPoint{force}, false); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ReadOnlyForceRecursive on an old kernel: %v", err)
	}
	if v := got[1]; v.Type != "bind" || v.ReadOnly || v.Propagation != spec.PropagationPrivate {
		t.Errorf("volume %+v", v)
	}
	if tm := got[2]; tm.Type != "tmpfs" || strings.Join(tm.Options, ",") != "exec,nosuid,nodev,size=1m" {
		t.Errorf("tmpfs %+v", tm)
	}
	if s := got[3]; s.Source != "/vol/_data/a/b" {
		t.Errorf("subpath source %q", s.Source)
	}
}
