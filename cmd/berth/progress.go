package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/api/types/jsonstream"
)

// displayStream shows a daemon's JSON progress stream: on a terminal one
// line per layer, redrawn in place with a bar; when piped, plain lines
// without the byte counts; when quiet, nothing but the error. An error
// message in the stream is returned.
func (c *cli) displayStream(r io.Reader, quiet bool) error {
	_, isTerm := terminal(c.out)
	d := &progressDisplay{out: c.out, tty: isTerm, ids: map[string]int{}}
	if quiet {
		d.out = io.Discard
	}
	dec := json.NewDecoder(r)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("read progress: %w", err)
		}
		if m.Error != nil {
			return errors.New(m.Error.Message)
		}
		d.show(m)
	}
}

type progressDisplay struct {
	out io.Writer
	tty bool
	// ids maps a layer ID to its line among the last len(ids) lines.
	ids map[string]int
}

func (d *progressDisplay) show(m jsonstream.Message) {
	if m.Stream != "" {
		d.ids = map[string]int{}
		fmt.Fprint(d.out, m.Stream)
		return
	}
	if m.Status == "" && m.Aux != nil {
		return
	}
	line := m.Status
	if m.ID != "" {
		line = m.ID + ": " + line
	}
	hasCounts := m.Progress != nil && (m.Progress.Current > 0 || m.Progress.Total > 0)
	if !d.tty {
		// Byte counts would be one line per chunk in a log.
		if !hasCounts {
			fmt.Fprintln(d.out, line)
		}
		return
	}
	if hasCounts {
		line += " " + progressBar(*m.Progress, 50)
	}
	if m.ID == "" {
		// Anything else ends the per-layer block, as in docker.
		d.ids = map[string]int{}
		fmt.Fprintln(d.out, line)
		return
	}
	n, ok := d.ids[m.ID]
	if !ok {
		n = len(d.ids)
		d.ids[m.ID] = n
		fmt.Fprintln(d.out)
	}
	up := len(d.ids) - n
	// Up to the layer's line, clear it, write, and back down.
	fmt.Fprintf(d.out, "\x1b[%dA\x1b[2K\r%s\x1b[%dB\r", up, line, up)
}

// progressBar renders docker's "[=====>    ]  1.2MB/4.5MB".
func progressBar(p jsonstream.Progress, width int) string {
	if p.Total <= 0 {
		return humanSize(p.Current)
	}
	cur := min(p.Current, p.Total)
	filled := int(int64(width) * cur / p.Total)
	bar := strings.Repeat("=", filled)
	if filled < width {
		bar += ">" + strings.Repeat(" ", width-filled-1)
	}
	return fmt.Sprintf("[%s] %8s/%s", bar, humanSize(p.Current), humanSize(p.Total))
}
