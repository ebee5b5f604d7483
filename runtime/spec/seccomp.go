package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// maxSeccompProfileSize bounds a Localhost profile; moby's default profile
// is about 20 KiB.
const maxSeccompProfileSize = 4 << 20

// seccompFor builds the filter for s. It needs the process capabilities in
// sp already set: the default profile allows some syscalls only to holders
// of the matching capability (for example CAP_SYS_ADMIN).
func seccompFor(s Seccomp, sp *specs.Spec) (*specs.LinuxSeccomp, error) {
	switch s.Kind {
	case SeccompUnconfined:
		return nil, nil
	case SeccompRuntimeDefault:
		p, err := seccomp.GetDefaultProfile(sp)
		if err != nil {
			return nil, fmt.Errorf("build default seccomp profile: %w", err)
		}
		return p, nil
	case SeccompLocalhost:
		if !filepath.IsAbs(s.LocalhostPath) {
			return nil, fmt.Errorf("seccomp localhost profile %q: not an absolute path: %w", s.LocalhostPath, errdefs.ErrInvalidArgument)
		}
		body, err := readLimited(s.LocalhostPath, maxSeccompProfileSize)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("load seccomp profile %s: %w: %w", s.LocalhostPath, errdefs.ErrNotFound, err)
			}
			return nil, fmt.Errorf("load seccomp profile %s: %w", s.LocalhostPath, err)
		}
		p, err := seccomp.LoadProfile(string(body), sp)
		if err != nil {
			return nil, fmt.Errorf("load seccomp profile %s: %w: %w", s.LocalhostPath, errdefs.ErrInvalidArgument, err)
		}
		if p == nil {
			// moby treats a profile with no default action and no rules
			// as "no filter"; say so rather than silently run unconfined.
			return nil, fmt.Errorf("load seccomp profile %s: profile has no defaultAction and no syscalls: %w", s.LocalhostPath, errdefs.ErrInvalidArgument)
		}
		return p, nil
	default:
		return nil, fmt.Errorf("unknown seccomp profile kind %d: %w", s.Kind, errdefs.ErrInvalidArgument)
	}
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file: %w", errdefs.ErrInvalidArgument)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("larger than %d bytes: %w", limit, errdefs.ErrInvalidArgument)
	}
	return b, nil
}
