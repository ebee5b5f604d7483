package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/types/jsonstream"
)

// Progress modes.
const (
	// ModePlain prints one line per event, BuildKit's plain format:
	// "#3 [2/5] COPY . /app", "#3 CACHED", "#3 DONE 0.2s".
	ModePlain = "plain"
	// ModeTTY keeps a live line for the running step (its elapsed time
	// and latest output) and prints each step once it ends.
	ModeTTY = "tty"
	// ModeQuiet prints nothing; the caller prints the ID.
	ModeQuiet = "quiet"
)

var stepLine = regexp.MustCompile(`^Step ([0-9]+)/([0-9]+) : (.*)$`)

// Progress renders the classic build stream of POST /build.
type Progress struct {
	out  io.Writer
	mode string
	now  func() time.Time

	// Width is the terminal's width; the live line is cut to it (0: 80).
	Width int

	// mu serializes the stream's events with the TTY's clock ticks.
	mu      sync.Mutex
	lastOut string

	total   int
	step    int
	name    string
	started time.Time
	cached  bool
	output  []string
	last    string
	live    bool
	steps   int
	begun   time.Time
	id      string
	partial string
}

// NewProgress renders to out in mode (ModePlain, ModeTTY or ModeQuiet).
func NewProgress(out io.Writer, mode string) *Progress {
	return &Progress{out: out, mode: mode, now: time.Now}
}

// Read consumes the build stream and returns the image ID, or the
// build's error.
func (p *Progress) Read(r io.Reader) (string, error) {
	p.begun = p.now()
	if p.mode == ModeTTY {
		// The running step's clock moves even when it prints nothing.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-t.C:
					p.mu.Lock()
					if p.name != "" {
						p.redraw(p.lastOut)
					}
					p.mu.Unlock()
				case <-stop:
					return
				}
			}
		}()
	}
	var buildErr error
	err := decodeStream(r, func(m jsonstream.Message) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		switch {
		case m.Error != nil:
			buildErr = errors.New(m.Error.Message)
		case m.Aux != nil:
			var res struct{ ID string }
			if json.Unmarshal(*m.Aux, &res) == nil && res.ID != "" {
				p.id = res.ID
			}
		case m.Stream != "":
			p.stream(m.Stream)
		case m.Status != "":
			p.pull(m)
		}
		return nil
	})
	if err == nil {
		err = buildErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.partial != "" {
		p.line(p.partial)
		p.partial = ""
	}
	if err != nil {
		p.fail(err)
		return "", err
	}
	p.finishStep()
	if p.mode == ModeQuiet && p.id == "" {
		// A quiet build's whole output is the ID.
		p.id = strings.TrimSpace(p.last)
	}
	if p.id == "" {
		return "", errors.New("build: the daemon did not report an image ID")
	}
	return p.id, nil
}

func (p *Progress) stream(s string) {
	s = p.partial + s
	p.partial = ""
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			p.partial = s
			return
		}
		p.line(s[:i])
		s = s[i+1:]
	}
}

func (p *Progress) line(l string) {
	p.last = l
	if p.mode == ModeQuiet {
		return
	}
	if m := stepLine.FindStringSubmatch(l); m != nil {
		p.finishStep()
		fmt.Sscan(m[1], &p.step)
		fmt.Sscan(m[2], &p.total)
		p.name, p.started, p.cached, p.output, p.lastOut = m[3], p.now(), false, nil, ""
		p.steps++
		if p.mode == ModePlain {
			fmt.Fprintf(p.out, "#%d [%d/%d] %s\n", p.step, p.step, p.total, p.name)
		} else {
			p.redraw("")
		}
		return
	}
	switch {
	case l == " ---> Using cache":
		p.cached = true
		return
	case strings.HasPrefix(l, " ---> Running in "), strings.HasPrefix(l, "Removing intermediate container "):
		return
	case strings.HasPrefix(l, " ---> "):
		return // the step's resulting ID
	case strings.HasPrefix(l, "Successfully built "):
		p.finishStep()
		return
	case strings.HasPrefix(l, "Successfully tagged "):
		p.finishStep()
		p.export("naming to " + strings.TrimPrefix(l, "Successfully tagged ") + " done")
		return
	}
	if p.step == 0 {
		p.export(l) // a warning before or after the steps
		return
	}
	p.output = append(p.output, l)
	if p.mode == ModePlain {
		fmt.Fprintf(p.out, "#%d %.3f %s\n", p.step, p.now().Sub(p.started).Seconds(), l)
	} else {
		p.lastOut = l
		p.redraw(l)
	}
}

// export prints a line outside any step.
func (p *Progress) export(l string) {
	if p.mode == ModeTTY {
		p.clearLive()
		fmt.Fprintf(p.out, " => %s\n", l)
		return
	}
	fmt.Fprintf(p.out, "#%d %s\n", p.steps+1, l)
}

func (p *Progress) pull(m jsonstream.Message) {
	if p.mode == ModeQuiet {
		return
	}
	s := m.Status
	if m.ID != "" {
		s = m.ID + ": " + s
	}
	switch {
	case p.mode == ModeTTY:
		p.redraw("pulling " + s)
	case strings.HasSuffix(m.Status, "complete") || strings.HasPrefix(m.Status, "Digest:"):
		fmt.Fprintf(p.out, "#%d %s\n", p.step, s)
	}
}

// finishStep closes the running step: CACHED or DONE with its time.
func (p *Progress) finishStep() {
	if p.step == 0 || p.name == "" {
		return
	}
	d := p.now().Sub(p.started)
	switch p.mode {
	case ModePlain:
		if p.cached {
			fmt.Fprintf(p.out, "#%d CACHED\n", p.step)
		} else {
			fmt.Fprintf(p.out, "#%d DONE %.1fs\n", p.step, d.Seconds())
		}
	case ModeTTY:
		p.clearLive()
		if p.cached {
			fmt.Fprintf(p.out, " => CACHED [%d/%d] %s\n", p.step, p.total, p.name)
		} else {
			fmt.Fprintf(p.out, " => [%d/%d] %s %s\n", p.step, p.total, p.name, dim(fmt.Sprintf("%.1fs", d.Seconds())))
		}
	}
	p.name = ""
}

// fail prints the failed step's output in full (a TTY showed only its
// last line) and the error.
func (p *Progress) fail(err error) {
	if p.mode == ModeQuiet {
		return
	}
	if p.mode == ModeTTY {
		p.clearLive()
		if p.name != "" {
			fmt.Fprintf(p.out, " => ERROR [%d/%d] %s\n", p.step, p.total, p.name)
			for _, l := range p.output {
				fmt.Fprintf(p.out, "    %s\n", l)
			}
		}
		p.name = ""
		return
	}
	if p.name != "" {
		fmt.Fprintf(p.out, "#%d ERROR: %s\n", p.step, err)
		p.name = ""
	}
}

// redraw shows the running step on one live line.
func (p *Progress) redraw(out string) {
	if p.mode != ModeTTY {
		return
	}
	width := p.Width
	if width <= 0 {
		width = 80
	}
	// A line longer than the terminal wraps, and \r cannot take it back.
	head := fmt.Sprintf(" => [%d/%d] ", p.step, p.total)
	clock := fmt.Sprintf("%.1fs", p.now().Sub(p.started).Seconds())
	room := width - 1 - len(head) - len(clock) - 1
	name := cut(p.name, room)
	room -= len(name) + 2
	var b bytes.Buffer
	b.WriteString("\r\x1b[K")
	b.WriteString(head + name + " " + dim(clock))
	if out = cut(out, room); out != "" {
		b.WriteString("  " + dim(out))
	}
	p.out.Write(b.Bytes())
	p.live = true
}

func (p *Progress) clearLive() {
	if p.live {
		io.WriteString(p.out, "\r\x1b[K")
		p.live = false
	}
}

func dim(s string) string { return "\x1b[2m" + s + "\x1b[0m" }

// cut shortens s to n bytes (with "..." when cut); n < 4 gives "".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	if n < 4 {
		return ""
	}
	return s[:n-3] + "..."
}
