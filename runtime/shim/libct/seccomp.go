package libct

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"runtime/debug"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"golang.org/x/sys/unix"
)

// seccompCacheFormat names the cache files' layout and the patch that
// produces and loads them (third_party/runc); change it with either.
const seccompCacheFormat = "berth-seccomp-cache v1"

// precompileSeccomp gives sc its compiled program (configs.Seccomp.Program,
// a Berth patch of libcontainer, see third_party/runc/README.md), so that
// neither the container's init nor any exec's setns init compiles the
// profile with libseccomp again: the program goes into the container's
// state with the rest of its config. Compiling Docker's default profile
// costs about 24 ms of CPU, and healthchecks exec every second.
//
// With cacheDir set, programs are kept there by a key over the profile,
// the libseccomp, runc and kernel versions, and a file that fails its
// digest is compiled again and replaced, never loaded.
//
// Anything that goes wrong leaves sc as it was: the init then compiles and
// loads the profile itself, as upstream runc does, and reports its errors.
func precompileSeccomp(sc *configs.Seccomp, cacheDir string) {
	if sc == nil || !seccomp.Enabled {
		return
	}
	key, err := seccompKey(sc)
	if err != nil {
		return
	}
	path := ""
	if cacheDir != "" {
		path = filepath.Join(cacheDir, key)
		if p, err := readSeccompProgram(path, key); err == nil {
			sc.Program = p
			return
		}
	}
	p, err := seccomp.Compile(sc)
	if err != nil {
		return
	}
	sc.Program = p
	if path != "" {
		// A program that could not be stored is still good for this
		// container; the next one tries again.
		_ = writeSeccompProgram(path, key, p)
	}
}

// seccompKey names a profile's program: everything its compilation
// depends on. The kernel release is in it because libseccomp's API level,
// which decides the flags a filter can have, is probed from the kernel.
func seccompKey(sc *configs.Seccomp) (string, error) {
	profile := *sc
	profile.Program = nil
	b, err := json.Marshal(&profile)
	if err != nil {
		return "", err
	}
	var uts unix.Utsname
	if err := unix.Uname(&uts); err != nil {
		return "", err
	}
	major, minor, micro := seccomp.Version()
	h := sha256.New()
	fmt.Fprintf(h, "%s\nlibseccomp %d.%d.%d\nrunc %s\nkernel %s\narch %s\n", seccompCacheFormat, major, minor, micro, runcVersion(), unix.ByteSliceToString(uts.Release[:]), goruntime.GOARCH)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// runcVersion is libcontainer's module version and where it was replaced
// from (third_party/runc): "" when the binary has no build information.
func runcVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, m := range bi.Deps {
		if m.Path == "github.com/opencontainers/runc" {
			if m.Replace != nil {
				return m.Version + " => " + m.Replace.Path + " " + m.Replace.Version
			}
			return m.Version
		}
	}
	return ""
}

// seccompCacheFile is a cache file's body; the file is a header line with
// the format and the body's SHA-256, then the body.
type seccompCacheFile struct {
	Key     string                  `json:"key"`
	Program *configs.SeccompProgram `json:"program"`
}

func writeSeccompProgram(path, key string, p *configs.SeccompProgram) error {
	body, err := json.Marshal(seccompCacheFile{Key: key, Program: p})
	if err != nil {
		return err
	}
	sum := sha256.Sum256(body)
	data := append([]byte(fmt.Sprintf("%s sha256:%x\n", seccompCacheFormat, sum)), body...)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	// Readers see the old file or the whole new one, never a part.
	return os.Rename(f.Name(), path)
}

// readSeccompProgram returns the program stored at path for key. A file
// whose header, digest, key or program does not check out is an error.
func readSeccompProgram(path, key string) (*configs.SeccompProgram, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	header, body, ok := bytes.Cut(data, []byte{'\n'})
	if !ok {
		return nil, fmt.Errorf("seccomp cache %s: no header", path)
	}
	sum := sha256.Sum256(body)
	if string(header) != fmt.Sprintf("%s sha256:%x", seccompCacheFormat, sum) {
		return nil, fmt.Errorf("seccomp cache %s: header or digest mismatch", path)
	}
	var f seccompCacheFile
	if err := json.Unmarshal(body, &f); err != nil {
		return nil, fmt.Errorf("seccomp cache %s: %w", path, err)
	}
	if f.Key != key || f.Program == nil {
		return nil, fmt.Errorf("seccomp cache %s: not the program for this profile", path)
	}
	if err := checkProgram(f.Program); err != nil {
		return nil, fmt.Errorf("seccomp cache %s: %w", path, err)
	}
	return f.Program, nil
}

// checkProgram refuses what cannot be a classic BPF program: no
// instructions, a partial one (8 bytes each), or more than the kernel's
// BPF_MAXINSNS (4096).
func checkProgram(p *configs.SeccompProgram) error {
	if n := len(p.Filter); n == 0 || n%8 != 0 || n/8 > 4096 {
		return fmt.Errorf("not a seccomp program: %d bytes", n)
	}
	return nil
}
