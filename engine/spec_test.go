package engine

import (
	"encoding/json"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/spec"
)

const testID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// testRootfs is a root filesystem with the users the specs resolve.
func testRootfs(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "etc", "group"), []byte("root:x:0:\nwww-data:x:33:\naudio:x:29:\n"), 0o644)
	return dir
}

// generate translates a create request all the way to the OCI spec.
func generate(t testing.TB, rootfs string, cfg container.Config, hc container.HostConfig) (*specs.Spec, spec.Container, error) {
	if _, err := verifySettings(&cfg, &hc); err != nil {
		return nil, spec.Container{}, err
	}
	mergeImage(&cfg, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, dockerspec.DockerOCIImageConfigExt{})
	mounts, err := planMounts(&cfg, &hc, nil)
	if err != nil {
		return nil, spec.Container{}, err
	}
	for i := range mounts {
		if mounts[i].Type == mount.TypeVolume {
			mounts[i].Source = "/var/lib/berth/volumes/v/_data"
		}
	}
	sc, err := containerSpec(specInput{ID: testID, Config: &cfg, HostConfig: &hc, Mounts: mounts, InitBinary: "/usr/bin/berth-shim", SeccompProfile: "/dev/null"})
	if err != nil {
		return nil, sc, err
	}
	sc.Rootfs = rootfs
	sp, err := spec.Generate(sc)
	return sp, sc, err
}

func TestContainerSpec(t *testing.T) {
	rootfs := testRootfs(t)
	yes := true
	pids := int64(50)
	for _, c := range []struct {
		name  string
		cfg   container.Config
		hc    container.HostConfig
		check func(t *testing.T, sp *specs.Spec)
	}{
		{"defaults", container.Config{}, container.HostConfig{}, func(t *testing.T, sp *specs.Spec) {
			if strings.Join(sp.Process.Args, " ") != "sh" || sp.Process.Cwd != "/" || sp.Hostname != testID[:12] {
				t.Errorf("args %v cwd %q hostname %q", sp.Process.Args, sp.Process.Cwd, sp.Hostname)
			}
			if !slices.Contains(sp.Process.Env, "HOSTNAME="+testID[:12]) || !slices.Contains(sp.Process.Env, "PATH=/bin") {
				t.Errorf("env %v", sp.Process.Env)
			}
			if sp.Linux.Seccomp == nil || len(sp.Linux.MaskedPaths) == 0 || len(sp.Process.Capabilities.Bounding) != 14 {
				t.Errorf("docker's defaults: seccomp %v masked %v caps %v", sp.Linux.Seccomp != nil, sp.Linux.MaskedPaths, sp.Process.Capabilities.Bounding)
			}
		}},
		{"user and workdir", container.Config{User: "www-data", WorkingDir: "/w"}, container.HostConfig{GroupAdd: []string{"5", "audio"}}, func(t *testing.T, sp *specs.Spec) {
			u := sp.Process.User
			if u.UID != 33 || u.GID != 33 || !slices.Contains(u.AdditionalGids, 5) || !slices.Contains(u.AdditionalGids, 29) || sp.Process.Cwd != "/w" {
				t.Errorf("user %+v cwd %q", u, sp.Process.Cwd)
			}
		}},
		{"init", container.Config{Cmd: []string{"app"}}, container.HostConfig{Init: &yes}, func(t *testing.T, sp *specs.Spec) {
			if strings.Join(sp.Process.Args, " ") != "/sbin/docker-init -- app" {
				t.Errorf("args %v", sp.Process.Args)
			}
			if !slices.ContainsFunc(sp.Mounts, func(m specs.Mount) bool {
				return m.Destination == initPath && m.Source == "/usr/bin/berth-shim" && slices.Contains(m.Options, "ro")
			}) {
				t.Errorf("no read-only init mount: %+v", sp.Mounts)
			}
		}},
		{"privileged", container.Config{}, container.HostConfig{Privileged: true}, func(t *testing.T, sp *specs.Spec) {
			if sp.Linux.Seccomp != nil || len(sp.Linux.MaskedPaths) != 0 || len(sp.Process.Capabilities.Bounding) < 30 {
				t.Errorf("privileged: seccomp %v masked %v caps %d", sp.Linux.Seccomp, sp.Linux.MaskedPaths, len(sp.Process.Capabilities.Bounding))
			}
		}},
		{"caps", container.Config{}, container.HostConfig{CapDrop: []string{"ALL"}, CapAdd: []string{"net_admin"}}, func(t *testing.T, sp *specs.Spec) {
			if got := sp.Process.Capabilities.Bounding; len(got) != 1 || got[0] != "CAP_NET_ADMIN" {
				t.Errorf("caps %v", got)
			}
		}},
		{"security opts", container.Config{}, container.HostConfig{SecurityOpt: []string{"no-new-privileges", "seccomp=unconfined", "label=disable", "systempaths=unconfined"}}, func(t *testing.T, sp *specs.Spec) {
			if !sp.Process.NoNewPrivileges || sp.Linux.Seccomp != nil || len(sp.Linux.MaskedPaths) != 0 || len(sp.Linux.ReadonlyPaths) != 0 {
				t.Errorf("nnp %v seccomp %v masked %v ro %v", sp.Process.NoNewPrivileges, sp.Linux.Seccomp, sp.Linux.MaskedPaths, sp.Linux.ReadonlyPaths)
			}
		}},
		{"read-only rootfs and tmpfs", container.Config{}, container.HostConfig{ReadonlyRootfs: true, Tmpfs: map[string]string{"/run": "size=1m"}}, func(t *testing.T, sp *specs.Spec) {
			if !sp.Root.Readonly {
				t.Error("rootfs writable")
			}
			i := slices.IndexFunc(sp.Mounts, func(m specs.Mount) bool { return m.Destination == "/run" })
			if i < 0 || sp.Mounts[i].Type != "tmpfs" || !slices.Contains(sp.Mounts[i].Options, "size=1m") || !slices.Contains(sp.Mounts[i].Options, "noexec") {
				t.Errorf("tmpfs /run: %+v", sp.Mounts)
			}
		}},
		{"resources", container.Config{}, container.HostConfig{Resources: container.Resources{Memory: 64 << 20, NanoCPUs: 1_500_000_000, CPUShares: 512, PidsLimit: &pids, MemoryReservation: 32 << 20, CpusetCpus: "0"}}, func(t *testing.T, sp *specs.Spec) {
			r := sp.Linux.Resources
			if *r.Memory.Limit != 64<<20 || *r.Memory.Swap != 128<<20 || *r.Memory.Reservation != 32<<20 {
				t.Errorf("memory %+v", r.Memory)
			}
			if *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.CPU.Shares != 512 || r.CPU.Cpus != "0" || r.Pids.Limit == nil || *r.Pids.Limit != 50 {
				t.Errorf("cpu %+v pids %+v", r.CPU, r.Pids)
			}
		}},
		{"ulimits and oom score", container.Config{}, container.HostConfig{OomScoreAdj: 500, Resources: container.Resources{Ulimits: []*container.Ulimit{{Name: "nofile", Soft: 10, Hard: 20}}}}, func(t *testing.T, sp *specs.Spec) {
			if len(sp.Process.Rlimits) != 1 || sp.Process.Rlimits[0] != (specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Soft: 10, Hard: 20}) || *sp.Process.OOMScoreAdj != 500 {
				t.Errorf("rlimits %+v oom %v", sp.Process.Rlimits, sp.Process.OOMScoreAdj)
			}
		}},
		{"volumes and binds", container.Config{Volumes: map[string]struct{}{"/anon": {}}}, container.HostConfig{Binds: []string{"/srv:/srv:ro,rslave", "v1:/v1"}}, func(t *testing.T, sp *specs.Spec) {
			find := func(d string) *specs.Mount {
				for i := range sp.Mounts {
					if sp.Mounts[i].Destination == d {
						return &sp.Mounts[i]
					}
				}
				return nil
			}
			if m := find("/srv"); m == nil || !slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rslave") || !slices.Contains(m.Options, "rbind") {
				t.Errorf("/srv %+v", m)
			}
			if m := find("/v1"); m == nil || m.Source != "/var/lib/berth/volumes/v/_data" || !slices.Contains(m.Options, "rw") {
				t.Errorf("/v1 %+v", m)
			}
			if m := find("/anon"); m == nil {
				t.Error("no anonymous volume")
			}
			if sp.Linux.RootfsPropagation != "rslave" {
				t.Errorf("rootfs propagation %q", sp.Linux.RootfsPropagation)
			}
		}},
		{"tty", container.Config{Tty: true}, container.HostConfig{}, func(t *testing.T, sp *specs.Spec) {
			if !sp.Process.Terminal || !slices.Contains(sp.Process.Env, "TERM=xterm") {
				t.Errorf("terminal %v env %v", sp.Process.Terminal, sp.Process.Env)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp, _, err := generate(t, rootfs, c.cfg, c.hc)
			if err != nil {
				t.Fatal(err)
			}
			c.check(t, sp)
		})
	}
	_, _, err := generate(t, rootfs, container.Config{}, container.HostConfig{GroupAdd: []string{"nosuchgroup"}})
	if err == nil || !strings.Contains(err.Error(), "Unable to find group nosuchgroup: no matching entries in group file") {
		t.Errorf("--group-add of a missing group: %v", err)
	}
}

func TestDNSConfig(t *testing.T) {
	host := []byte("# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2\nsearch corp.example\noptions edns0 trust-ad\n")
	d := dnsConfig(&container.HostConfig{}, host, false)
	if strings.Join(d.Servers, " ") != "10.0.0.2" || strings.Join(d.Searches, " ") != "corp.example" || strings.Join(d.Options, " ") != "edns0 trust-ad" {
		t.Errorf("filtered host resolv.conf: %+v", d)
	}
	if d := dnsConfig(&container.HostConfig{}, []byte("nameserver 127.0.0.53\n"), false); strings.Join(d.Servers, " ") != "8.8.8.8 8.8.4.4" {
		t.Errorf("loopback-only host: %+v", d)
	}
	if d := dnsConfig(&container.HostConfig{}, host, true); d != nil {
		t.Errorf("host network copies the host's file, got %+v", d)
	}
	hc := &container.HostConfig{DNS: []netip.Addr{netip.MustParseAddr("1.1.1.1")}, DNSSearch: []string{"a.b"}, DNSOptions: []string{"ndots:2"}}
	if d := dnsConfig(hc, host, false); strings.Join(d.Servers, " ") != "1.1.1.1" || d.Searches[0] != "a.b" || d.Options[0] != "ndots:2" {
		t.Errorf("--dns flags: %+v", d)
	}
	hosts, err := extraHosts(&container.HostConfig{ExtraHosts: []string{"db:10.1.1.1", "v6=[::1]"}}, "")
	if err != nil || len(hosts) != 2 || hosts[1].IP != "::1" || hosts[0].Names[0] != "db" {
		t.Errorf("extra hosts %+v %v", hosts, err)
	}
	if _, err := extraHosts(&container.HostConfig{ExtraHosts: []string{"gw:host-gateway"}}, ""); err == nil {
		t.Error("host-gateway without a gateway accepted")
	}
}

// createBody is what POST /containers/create decodes (dockerapi's type
// without the legacy fields).
type createBody struct {
	container.Config
	HostConfig *container.HostConfig `json:",omitempty"`
}

// FuzzCreateSpec feeds create bodies through the whole translation: the
// checks, the merge with an image, the mount plan, the runtime spec and
// the OCI spec. Nothing may panic, and a spec that comes out keeps the
// invariants runc relies on.
func FuzzCreateSpec(f *testing.F) {
	for _, s := range []string{
		`{"Image":"busybox","Cmd":["echo","hi"]}`,
		`{"Image":"b","Entrypoint":[""],"Cmd":["ls"],"User":"www-data","WorkingDir":"/x","Tty":true,"Env":["A=1"]}`,
		`{"Image":"b","HostConfig":{"Binds":["/h:/c:ro,rshared","v1:/v","/anon"],"Tmpfs":{"/run":"size=1m,exec"},"ReadonlyRootfs":true}}`,
		`{"Image":"b","HostConfig":{"Privileged":true,"CapAdd":["ALL"],"SecurityOpt":["no-new-privileges","seccomp=unconfined"]}}`,
		`{"Image":"b","HostConfig":{"Memory":67108864,"MemorySwap":-1,"NanoCpus":500000000,"PidsLimit":5,"Ulimits":[{"Name":"nofile","Soft":1,"Hard":2}],"OomScoreAdj":-100}}`,
		`{"Image":"b","HostConfig":{"Mounts":[{"Type":"tmpfs","Target":"/t","TmpfsOptions":{"SizeBytes":1048576,"Mode":511}},{"Type":"volume","Source":"vv","Target":"/d","VolumeOptions":{"Subpath":"a/b"}}]}}`,
		`{"Image":"b","Volumes":{"/data":{}},"HostConfig":{"Init":true,"CapDrop":["ALL"],"GroupAdd":["5"],"ShmSize":1048576}}`,
		`{"Image":"b","HostConfig":{"NetworkMode":"container:x","ExtraHosts":["a:1.2.3.4"],"Dns":["8.8.8.8"]}}`,
	} {
		f.Add(s)
	}
	rootfs := testRootfs(f)
	f.Fuzz(func(t *testing.T, body string) {
		var b createBody
		if json.Unmarshal([]byte(body), &b) != nil {
			return
		}
		hc := container.HostConfig{}
		if b.HostConfig != nil {
			hc = *b.HostConfig
		}
		sp, sc, err := generate(t, rootfs, b.Config, hc)
		if err != nil {
			return
		}
		if len(sp.Process.Args) == 0 || sp.Process.Args[0] == "" && len(sc.Args) > 0 && sc.Args[0] != "" {
			t.Fatalf("process args %q", sp.Process.Args)
		}
		if !path.IsAbs(sp.Process.Cwd) {
			t.Fatalf("cwd %q", sp.Process.Cwd)
		}
		for _, m := range sp.Mounts {
			if !path.IsAbs(m.Destination) || path.Clean(m.Destination) == "/" {
				t.Fatalf("mount destination %q", m.Destination)
			}
			if m.Type == "bind" && !path.IsAbs(m.Source) {
				t.Fatalf("bind source %q", m.Source)
			}
		}
		if hc.Privileged && sp.Linux.Seccomp != nil {
			t.Fatal("privileged container with a seccomp filter")
		}
		if sp.Root.Readonly != hc.ReadonlyRootfs {
			t.Fatalf("read-only rootfs %v, asked %v", sp.Root.Readonly, hc.ReadonlyRootfs)
		}
	})
}

// TestResourcesOptional: swappiness, the OOM killer switch and the block
// I/O weight reach the runtime's resources, and the OCI spec.
func TestResourcesOptional(t *testing.T) {
	sw, yes := int64(30), true
	r, err := resources(container.Resources{Memory: 64 << 20, MemorySwappiness: &sw, OomKillDisable: &yes, BlkioWeight: 300})
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spec.Generate(spec.Container{ID: testID, Rootfs: testRootfs(t), Args: []string{"sh"}, Resources: r})
	if err != nil {
		t.Fatal(err)
	}
	lr := sp.Linux.Resources
	if m := lr.Memory; m == nil || m.Swappiness == nil || *m.Swappiness != 30 || m.DisableOOMKiller == nil || !*m.DisableOOMKiller || *m.Limit != 64<<20 {
		t.Errorf("memory %+v", lr.Memory)
	}
	if lr.BlockIO == nil || lr.BlockIO.Weight == nil || *lr.BlockIO.Weight != 300 {
		t.Errorf("block I/O %+v", lr.BlockIO)
	}
}
