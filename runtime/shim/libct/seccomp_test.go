package libct

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	mobyseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-dev/berth/internal/testutil"
)

func needSeccomp(t *testing.T) {
	t.Helper()
	if !seccomp.Enabled {
		testutil.Missing(t, "test binary built without -tags seccomp (and cgo): libcontainer cannot compile filters; run make test-unit")
	}
}

// defaultCaps is Docker's default capability set: berthd's default profile
// for a container that has it.
var defaultCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

// defaultProfile is the runtime default profile (runtime/spec's
// SeccompRuntimeDefault) for a process with caps.
func defaultProfile(t *testing.T, caps []string) *specs.LinuxSeccomp {
	t.Helper()
	p, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func ptrTo[T any](v T) *T { return &v }

// testProfiles are the profiles the tests compile: berthd's default ones
// and variants that take the other paths of runc's compiler and patcher
// (errno returns, argument filters, architectures, flags, no -ENOSYS stub).
func testProfiles(t *testing.T) map[string]*configs.Seccomp {
	t.Helper()
	variants := map[string]*specs.LinuxSeccomp{
		"default":          defaultProfile(t, defaultCaps),
		"default-sysadmin": defaultProfile(t, append([]string{"CAP_SYS_ADMIN"}, defaultCaps...)),
	}
	p := defaultProfile(t, defaultCaps)
	p.Flags = []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow}
	p.Architectures = []specs.Arch{specs.ArchX86_64}
	// Argument filters: two conditions on different arguments (one rule),
	// and two on the same argument (a rule each).
	p.Syscalls = append(p.Syscalls,
		specs.LinuxSyscall{Names: []string{"keyctl"}, Action: specs.ActErrno, ErrnoRet: ptrTo(uint(unix.EACCES)), Args: []specs.LinuxSeccompArg{{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 7, Op: specs.OpGreaterThan}}},
		specs.LinuxSyscall{Names: []string{"add_key"}, Action: specs.ActErrno, ErrnoRet: ptrTo(uint(unix.EBUSY)), Args: []specs.LinuxSeccompArg{{Index: 2, Value: 0xf0, ValueTwo: 0x10, Op: specs.OpMaskedEqual}, {Index: 2, Value: 3, Op: specs.OpNotEqual}}},
		specs.LinuxSyscall{Names: []string{"acct"}, Action: specs.ActKillProcess},
	)
	variants["flags-args-native"] = p
	// ENOSYS as the default errno: runc adds no -ENOSYS stub.
	p = defaultProfile(t, defaultCaps)
	p.DefaultErrnoRet = ptrTo(uint(unix.ENOSYS))
	variants["default-enosys"] = p
	// A deny list: permissive default, no stub, unknown names ignored.
	variants["denylist"] = &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"unshare", "no_such_syscall"}, Action: specs.ActErrno},
			{Names: []string{"personality"}, Action: specs.ActErrno, ErrnoRet: ptrTo(uint(unix.EINVAL)), Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpNotEqual}}},
			{Names: []string{"ptrace"}, Action: specs.ActLog},
			{Names: []string{"kexec_load"}, Action: specs.ActKill},
		},
	}
	out := map[string]*configs.Seccomp{}
	for name, v := range variants {
		c, err := specconv.SetupSeccomp(v)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = c
	}
	return out
}

func TestSeccompCompileRefusesAgents(t *testing.T) {
	needSeccomp(t)
	for name, c := range map[string]*configs.Seccomp{
		"notify":   {DefaultAction: configs.Errno, Syscalls: []*configs.Syscall{{Name: "mkdir", Action: configs.Notify}}},
		"listener": {DefaultAction: configs.Errno, ListenerPath: "/run/agent.sock", Syscalls: []*configs.Syscall{{Name: "mkdir", Action: configs.Allow}}},
	} {
		if p, err := seccomp.Compile(c); err == nil {
			t.Errorf("%s: Compile = %d bytes, want an error (a seccomp agent needs runc's own load)", name, len(p.Filter))
		}
		precompileSeccomp(c, t.TempDir())
		if c.Program != nil {
			t.Errorf("%s: precompileSeccomp set a program", name)
		}
	}
}

func TestSeccompCache(t *testing.T) {
	needSeccomp(t)
	dir := filepath.Join(t.TempDir(), "seccomp-cache")
	for name, sc := range testProfiles(t) {
		t.Run(name, func(t *testing.T) {
			key, err := seccompKey(sc)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, key)
			variants := compilations(t, sc)
			isCompiled := func(p *configs.SeccompProgram) bool {
				return slices.ContainsFunc(variants, func(q *configs.SeccompProgram) bool { return sameProgram(p, q) })
			}

			// Cold: compiled and stored.
			cold := *sc
			precompileSeccomp(&cold, dir)
			if cold.Program == nil {
				t.Fatal("cold: no program")
			}
			if !isCompiled(cold.Program) {
				t.Fatal("cold: program is none Compile makes")
			}
			got, err := readSeccompProgram(path, key)
			if err != nil {
				t.Fatalf("cold: nothing valid stored: %v", err)
			}
			if !sameProgram(got, cold.Program) {
				t.Fatal("cold: stored program differs from the one used")
			}

			// Warm: the stored program, as it is (runc's -ENOSYS stub
			// orders its architectures as a Go map iterates, so two
			// compilations may differ in that order; the stored one is
			// what every container gets).
			stored, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for range 5 {
				warm := *sc
				precompileSeccomp(&warm, dir)
				if warm.Program == nil || !sameProgram(warm.Program, cold.Program) {
					t.Fatal("warm: program is not the stored one")
				}
			}
			// The profile alone names the program, not the program set.
			if k2, _ := seccompKey(&cold); k2 != key {
				t.Fatalf("key changed once the program was set: %s != %s", k2, key)
			}

			// Damaged files: detected, compiled again, replaced.
			flipped := bytes.Clone(stored)
			flipped[len(flipped)-20] ^= 0x01
			for what, data := range map[string][]byte{
				"truncated":    stored[:len(stored)/2],
				"bit flipped":  flipped,
				"empty":        {},
				"no header":    stored[bytes.IndexByte(stored, '\n')+1:],
				"other format": bytes.Replace(stored, []byte("cache v1 "), []byte("cache v0 "), 1),
			} {
				if err := os.WriteFile(path, data, 0o600); err != nil {
					t.Fatal(err)
				}
				if _, err := readSeccompProgram(path, key); err == nil {
					t.Fatalf("%s cache file was accepted", what)
				}
				again := *sc
				precompileSeccomp(&again, dir)
				if again.Program == nil || !isCompiled(again.Program) {
					t.Fatalf("%s cache file: program not compiled again", what)
				}
				got, err := readSeccompProgram(path, key)
				if err != nil || !sameProgram(got, again.Program) {
					t.Fatalf("%s cache file not replaced with the new program (%v)", what, err)
				}
			}
		})
	}
	// A stored program under another profile's name is not loaded.
	profiles := testProfiles(t)
	ka, _ := seccompKey(profiles["default"])
	kb, _ := seccompKey(profiles["denylist"])
	if err := os.Rename(filepath.Join(dir, kb), filepath.Join(dir, ka)); err != nil {
		t.Fatal(err)
	}
	if _, err := readSeccompProgram(filepath.Join(dir, ka), ka); err == nil {
		t.Fatal("another profile's program was accepted")
	}
}

func TestSeccompKeyDependsOnProfile(t *testing.T) {
	needSeccomp(t)
	seen := map[string]string{}
	for name, sc := range testProfiles(t) {
		k, err := seccompKey(sc)
		if err != nil {
			t.Fatal(err)
		}
		if other, ok := seen[k]; ok {
			t.Fatalf("profiles %s and %s share key %s", name, other, k)
		}
		seen[k] = name
	}
}

func sameProgram(a, b *configs.SeccompProgram) bool {
	return bytes.Equal(a.Filter, b.Filter) && a.Flags == b.Flags && a.NoNewPrivs == b.NoNewPrivs
}

// compilations returns the distinct programs Compile makes of sc: runc's
// -ENOSYS stub orders its architectures as a Go map iterates, so a profile
// for two audit architectures has two. 32 tries miss one of two with a
// probability of 2^-31.
func compilations(t *testing.T, sc *configs.Seccomp) []*configs.SeccompProgram {
	t.Helper()
	var out []*configs.SeccompProgram
	for range 32 {
		p, err := seccomp.Compile(sc)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(out, func(q *configs.SeccompProgram) bool { return sameProgram(p, q) }) {
			out = append(out, p)
		}
	}
	return out
}

func BenchmarkSeccompCompile(b *testing.B) {
	sc := benchProfile(b)
	for b.Loop() {
		if _, err := seccomp.Compile(sc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeccompCached is what a create pays once the default profile
// is in the cache.
func BenchmarkSeccompCached(b *testing.B) {
	sc := benchProfile(b)
	dir := b.TempDir()
	precompileSeccomp(sc, dir)
	sc.Program = nil
	for b.Loop() {
		c := *sc
		precompileSeccomp(&c, dir)
		if c.Program == nil {
			b.Fatal("no program")
		}
	}
}

func benchProfile(b *testing.B) *configs.Seccomp {
	if !seccomp.Enabled {
		b.Skip("needs -tags seccomp")
	}
	p, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: defaultCaps}}})
	if err != nil {
		b.Fatal(err)
	}
	sc, err := specconv.SetupSeccomp(p)
	if err != nil {
		b.Fatal(err)
	}
	return sc
}
