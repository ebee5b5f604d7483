package engine

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
)

// Top lists the container's processes as dockerd does: the host's ps
// with psArgs ("-ef" when empty), its rows narrowed to the PIDs of the
// container's cgroup.
func (e *Engine) Top(ctx context.Context, ref, psArgs string) (container.TopResponse, error) {
	if psArgs == "" {
		psArgs = "-ef"
	}
	if err := validatePSArgs(psArgs); err != nil {
		return container.TopResponse{}, err
	}
	c, err := e.lookup(ref)
	if err != nil {
		return container.TopResponse{}, err
	}
	e.mu.Lock()
	id := c.rec.ID
	e.mu.Unlock()
	rc, err := e.rt.Container(id)
	if err != nil {
		return container.TopResponse{}, fmt.Errorf("top of container %s: %w", id, err)
	}
	if !e.runs(id) {
		return container.TopResponse{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is not running", id))
	}
	if rc.Paused {
		return container.TopResponse{}, errdefs.ErrConflict.WithMessage(fmt.Sprintf("container %s is paused", id))
	}
	st, err := e.rt.ContainerCgroupStats(ctx, id)
	if err != nil {
		return container.TopResponse{}, fmt.Errorf("top of container %s: %w", id, err)
	}
	args := strings.Fields(psArgs)
	pids := make([]string, len(st.Processes))
	for i, p := range st.Processes {
		pids[i] = strconv.Itoa(p)
	}
	out, err := exec.CommandContext(ctx, "ps", append(slices.Clone(args), "-q", strings.Join(pids, ","))...).Output()
	if err != nil || len(pids) == 0 {
		// Some options (f) cannot go with -q: all rows, filtered below.
		out, err = exec.CommandContext(ctx, "ps", args...).Output()
		if err != nil {
			msg := err.Error()
			if ee, ok := err.(*exec.ExitError); ok && len(ee.Stderr) > 0 {
				msg = strings.TrimSpace(string(ee.Stderr))
			}
			return container.TopResponse{}, errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("Error running ps: %s", msg))
		}
	}
	return parsePS(out, st.Processes)
}

// validatePSArgs refuses an output format that renames the PID column
// (dockerd needs it to find the container's rows).
func validatePSArgs(psArgs string) error {
	re := regexp.MustCompile(`\s+(\S*)=\s*(PID\S*)`)
	for _, g := range re.FindAllStringSubmatch(psArgs, -1) {
		if len(g) >= 3 && g[1] != "pid" {
			return errdefs.ErrInvalidArgument.WithMessage(fmt.Sprintf("specifying \"%s=%s\" is not allowed", g[1], g[2]))
		}
	}
	return nil
}

// parsePS splits ps output into titles and rows, keeping the rows of the
// given PIDs; the last column (the command) keeps its spaces.
func parsePS(out []byte, pids []int) (container.TopResponse, error) {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return container.TopResponse{}, fmt.Errorf("ps printed nothing")
	}
	titles := strings.Fields(lines[0])
	pidIndex := slices.Index(titles, "PID")
	if pidIndex < 0 {
		return container.TopResponse{}, errdefs.ErrInvalidArgument.WithMessage("Couldn't find PID field in ps output")
	}
	r := container.TopResponse{Titles: titles, Processes: [][]string{}}
	for _, line := range lines[1:] {
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := fieldsN(line, len(titles))
		if len(f) <= pidIndex {
			continue
		}
		p, err := strconv.Atoi(f[pidIndex])
		if err != nil {
			return container.TopResponse{}, fmt.Errorf("unexpected pid %q: %w", f[pidIndex], err)
		}
		if slices.Contains(pids, p) {
			r.Processes = append(r.Processes, f)
		}
	}
	return r, nil
}

// fieldsN splits s on ASCII blanks into at most n fields, the last one
// keeping the rest of the line.
func fieldsN(s string, n int) []string {
	var out []string
	s = string(bytes.TrimLeft([]byte(s), " \t"))
	for len(out) < n-1 {
		i := strings.IndexAny(s, " \t")
		if i < 0 {
			break
		}
		out = append(out, s[:i])
		s = strings.TrimLeft(s[i:], " \t")
	}
	if s != "" {
		out = append(out, s)
	}
	return out
}
