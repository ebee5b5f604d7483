package logs

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"

	"github.com/berth-dev/berth/runtime/logfile"
)

// pollInterval is how often a follower at the end of the file looks again.
const pollInterval = 100 * time.Millisecond

// follower reads a log's records in order across its rotated files, and
// goes on as the shim appends, rotates, compresses or truncates. The time
// of the last record it returned is its cursor: records at or before it
// are never returned again, which keeps a file met twice (renamed under
// the reader) from being read twice, and lets a reader start again
// anywhere in the chain (a forwarder after a restart).
type follower struct {
	path   string
	format logfile.Format
	cursor time.Time

	f  *os.File
	zr *gzip.Reader
	sc *logfile.Scanner
	// live: f was the log's current file when opened: it may still grow,
	// be rotated away or be truncated.
	live bool
	// broken: f holds bytes that are no record of the format; nothing
	// more is read from it.
	broken bool
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
	}
	if fl.zr != nil {
		fl.zr.Close()
	}
	fl.f, fl.zr, fl.sc, fl.live, fl.broken = nil, nil, nil, false, false
}

// next returns the next record after the cursor. io.EOF means none has
// been written yet; a later call may find more. Other errors concern one
// record or file; the follower stays usable and goes on past it.
func (fl *follower) next() (logfile.Record, error) {
	for {
		if fl.sc == nil {
			if err := fl.advance(); err != nil {
				return logfile.Record{}, err
			}
		}
		var r logfile.Record
		err := io.EOF
		if !fl.broken {
			r, err = fl.sc.Next()
		}
		switch {
		case err == nil:
			if !r.Time.After(fl.cursor) {
				continue
			}
			fl.cursor = r.Time
			return r, nil
		case errors.Is(err, io.EOF):
			if !fl.live {
				fl.close()
				continue
			}
			switch fl.changed() {
			case fileRotated:
				// What was appended before the rotation is still to be
				// read from f; then on to the next file.
				fl.live = false
				continue
			case fileTruncated:
				if _, err := fl.f.Seek(0, io.SeekStart); err != nil {
					return logfile.Record{}, err
				}
				fl.sc.Reset(fl.f, 0)
				fl.broken = false
				continue
			}
			return logfile.Record{}, io.EOF
		case errors.Is(err, logfile.ErrCorrupt):
			// A line format skips the bad line; a local file cannot be
			// resynchronised.
			if fl.format == logfile.Local {
				fl.broken = true
			}
			return logfile.Record{}, fmt.Errorf("%s: %w", fl.f.Name(), err)
		default:
			name := fl.f.Name()
			fl.broken = true
			return logfile.Record{}, fmt.Errorf("read %s: %w", name, err)
		}
	}
}

type change int

const (
	fileSame change = iota
	fileRotated
	fileTruncated
)

// changed tells what happened to the live file since it was opened.
func (fl *follower) changed() change {
	cur, err := fl.f.Stat()
	if err != nil {
		return fileSame
	}
	st, err := os.Stat(fl.path)
	if err != nil || !os.SameFile(st, cur) {
		return fileRotated
	}
	if pos, err := fl.f.Seek(0, io.SeekCurrent); err == nil && cur.Size() < pos {
		return fileTruncated
	}
	return fileSame
}

// advance opens the oldest file of the chain that holds records after the
// cursor (the current file when no rotated one does). io.EOF: the log has
// no file yet.
//
// The choice is made twice, before and after the open, and must name the
// same file: a rotation between listing and opening would otherwise make
// the follower open the next file and skip the one before it.
func (fl *follower) advance() error {
	for attempt := 0; attempt < 20; attempt++ {
		fi, err := fl.pick()
		if err != nil {
			return err
		}
		f, err := os.Open(fi.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		st, err := f.Stat()
		f.Close()
		if err != nil {
			return err
		}
		again, err := fl.pick()
		if err != nil {
			return err
		}
		if cur, err := os.Stat(again.Path); err != nil || !os.SameFile(cur, st) {
			continue
		}
		err = fl.open(again, 0)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil {
			// Opened by name again: make sure it is the file chosen.
			if st2, err := fl.f.Stat(); err != nil || !os.SameFile(st2, st) {
				fl.close()
				continue
			}
		}
		return err
	}
	return fmt.Errorf("follow %s: the log rotates faster than it can be opened", fl.path)
}

// pick lists the chain and chooses the file to read next.
func (fl *follower) pick() (logfile.File, error) {
	files, err := logfile.Files(fl.path)
	if errors.Is(err, fs.ErrNotExist) {
		return logfile.File{}, io.EOF
	}
	if err != nil {
		return logfile.File{}, err
	}
	for _, fi := range files {
		if fi.Index > 0 && !fl.cursor.IsZero() {
			last, ok, err := lastTime(fi, fl.format)
			if errors.Is(err, fs.ErrNotExist) {
				// Renamed or compressed meanwhile: list again.
				return fl.pick()
			}
			if err != nil {
				return logfile.File{}, err
			}
			if ok && !last.After(fl.cursor) {
				continue
			}
		}
		return fi, nil
	}
	return logfile.File{}, io.EOF
}

// open makes fi the file being read, from offset (plain files).
func (fl *follower) open(fi logfile.File, offset int64) error {
	f, err := os.Open(fi.Path)
	if err != nil {
		return err
	}
	var r io.Reader = f
	var zr *gzip.Reader
	if fi.Compressed {
		if zr, err = gzip.NewReader(f); err != nil {
			f.Close()
			return fmt.Errorf("read %s: %w", fi.Path, err)
		}
		r = zr
	} else if offset > 0 {
		if _, err := f.Seek(offset, io.SeekStart); err != nil {
			f.Close()
			return err
		}
	}
	fl.close()
	fl.f, fl.zr, fl.live = f, zr, fi.Index == 0
	fl.sc = logfile.NewScanner(r, fl.format)
	fl.sc.Reset(r, offset)
	return nil
}

// lastTime is the time of a rotated file's last record: from the gzip
// header, or read from the end of a plain file. ok is false when the file
// does not tell (an empty file, a gzip without metadata).
func lastTime(fi logfile.File, format logfile.Format) (time.Time, bool, error) {
	f, err := os.Open(fi.Path)
	if err != nil {
		return time.Time{}, false, err
	}
	defer f.Close()
	if fi.Compressed {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return time.Time{}, false, nil
		}
		defer zr.Close()
		t, ok := logfile.GzipLastTime(zr.Header)
		return t, ok, nil
	}
	st, err := f.Stat()
	if err != nil {
		return time.Time{}, false, err
	}
	off, n, err := logfile.TailOffset(f, st.Size(), format, 1)
	if err != nil || n == 0 {
		return time.Time{}, false, nil
	}
	r, err := logfile.NewScanner(io.NewSectionReader(f, off, st.Size()-off), format).Next()
	if err != nil {
		return time.Time{}, false, nil
	}
	return r.Time, true, nil
}

// seekTail positions the follower at the last n records of the chain (all
// of it when it holds fewer).
func (fl *follower) seekTail(n int) error {
	files, err := logfile.Files(fl.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	need := n
	for i := len(files) - 1; i >= 0 && need > 0; i-- {
		fi := files[i]
		if fi.Compressed {
			count, err := countRecords(fi, fl.format)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return err
			}
			if count < need {
				need -= count
				continue
			}
			if err := fl.open(fi, 0); err != nil {
				return err
			}
			for range count - need {
				if _, err := fl.sc.Next(); err != nil && !errors.Is(err, logfile.ErrCorrupt) {
					return err
				}
			}
			return nil
		}
		f, err := os.Open(fi.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		off, found, err := logfile.TailOffset(f, st.Size(), fl.format, need)
		f.Close()
		if err != nil {
			return fmt.Errorf("tail %s: %w", fi.Path, err)
		}
		if found < need {
			need -= found
			continue
		}
		return fl.open(fi, off)
	}
	// Fewer records than asked for: everything, from the oldest file.
	return nil
}

func countRecords(fi logfile.File, format logfile.Format) (int, error) {
	f, err := os.Open(fi.Path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", fi.Path, err)
	}
	defer zr.Close()
	sc := logfile.NewScanner(zr, format)
	n := 0
	for {
		_, err := sc.Next()
		switch {
		case err == nil || errors.Is(err, logfile.ErrCorrupt) && format != logfile.Local:
			n++
		case errors.Is(err, io.EOF):
			return n, nil
		default:
			return n, fmt.Errorf("read %s: %w", fi.Path, err)
		}
	}
}
