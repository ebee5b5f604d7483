package builder

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// minMasked is the shortest secret value masked in RUN output: masking
// every "a" or "1" would garble the output and protect nothing.
const minMasked = 4

// mask is what a secret value is replaced by in RUN output.
const mask = "****"

// secrets holds a build's secrets in memory. They reach the disk only as
// files on the build's tmpfs, one per RUN that mounts them, removed when
// that RUN ends.
type secrets struct {
	mu     sync.Mutex
	values map[string][]byte
	dir    string
	seq    int
	// masked are the values (and the lines of multi-line values) masked
	// in output, longest first.
	masked [][]byte
}

func newSecrets(values map[string][]byte, dir string) *secrets {
	s := &secrets{values: map[string][]byte{}, dir: dir}
	for id, v := range values {
		s.values[id] = bytes.Clone(v)
		for _, m := range append([][]byte{v}, bytes.Split(v, []byte("\n"))...) {
			m = bytes.TrimRight(m, "\r\n")
			if len(m) >= minMasked {
				s.masked = append(s.masked, bytes.Clone(m))
			}
		}
	}
	sort.Slice(s.masked, func(i, j int) bool { return len(s.masked[i]) > len(s.masked[j]) })
	return s
}

// String keeps secret values out of any log that formats the holder.
func (s *secrets) String() string { return fmt.Sprintf("%d build secrets", len(s.values)) }

func (s *secrets) get(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.values[id]
	return v, ok
}

// file writes a secret to a new file on the tmpfs and returns its path and
// a func that removes it.
func (s *secrets) file(value []byte, mode os.FileMode, uid, gid int) (string, func(), error) {
	s.mu.Lock()
	s.seq++
	p := filepath.Join(s.dir, strconv.Itoa(s.seq))
	s.mu.Unlock()
	if err := os.MkdirAll(s.dir, 0o711); err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", nil, err
	}
	_, err = f.Write(value)
	if err == nil {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		err = f.Chmod(mode)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	rm := func() { os.Remove(p) }
	if err != nil {
		rm()
		return "", nil, fmt.Errorf("write secret file: %w", err)
	}
	return p, rm, nil
}

// envScript is a POSIX shell snippet that exports each name with the
// value of its secret, quoted so that any byte but NUL survives.
func envScript(vars map[string][]byte) []byte {
	var b bytes.Buffer
	names := make([]string, 0, len(vars))
	for n := range vars {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString("export " + n + "='")
		b.WriteString(strings.ReplaceAll(string(vars[n]), "'", `'\''`))
		b.WriteString("'\n")
	}
	return b.Bytes()
}

// mask replaces every secret value in line.
func (s *secrets) mask(line []byte) []byte {
	for _, m := range s.masked {
		if bytes.Contains(line, m) {
			line = bytes.ReplaceAll(line, m, []byte(mask))
		}
	}
	return line
}

// wipe overwrites the values in memory (best effort: copies the Go
// runtime made are out of reach).
func (s *secrets) wipe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.values {
		clear(v)
	}
	for _, m := range s.masked {
		clear(m)
	}
	s.values = map[string][]byte{}
	s.masked = nil
}
