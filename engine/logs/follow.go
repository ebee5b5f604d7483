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
// The choice is made on a stable listing (see stableFiles), and the file
// opened must be the one listed: a rotation between listing and opening
// would otherwise make the follower skip a file.
func (fl *follower) advance() error {
	for attempt := 0; attempt < 50; attempt++ {
		files, err := stableFiles(fl.path)
		if err != nil {
			return err
		}
		fi, ok, err := fl.choose(files)
		if err != nil || !ok {
			return err
		}
		f, err := os.Open(fi.Path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if st, err := f.Stat(); err != nil || !os.SameFile(st, fi.info) {
			f.Close()
			continue
		}
		return fl.use(f, fi.File, 0)
	}
	return fmt.Errorf("follow %s: the log rotates faster than it can be listed", fl.path)
}

// listed is a file of a listing with what it was when listed.
type listed struct {
	logfile.File
	info fs.FileInfo
}

// stableFiles lists the chain until two listings in a row agree on every
// name and file: a directory read while the shim renames files in it may
// miss one (it moved past the reader's position), and nothing else tells.
func stableFiles(path string) ([]listed, error) {
	var prev []listed
	for attempt := 0; attempt < 50; attempt++ {
		files, err := logfile.Files(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, io.EOF
		}
		if err != nil {
			return nil, err
		}
		cur := make([]listed, 0, len(files))
		for _, f := range files {
			st, err := os.Stat(f.Path)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					cur = nil
					break
				}
				return nil, err
			}
			cur = append(cur, listed{f, st})
		}
		if cur != nil && sameListing(prev, cur) {
			return cur, nil
		}
		prev = cur
	}
	return nil, fmt.Errorf("list %s: the log rotates faster than it can be listed", path)
}

func sameListing(a, b []listed) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Path != b[i].Path || !os.SameFile(a[i].info, b[i].info) {
			return false
		}
	}
	return true
}

// choose picks the file to read next from a listing: the oldest holding
// records after the cursor.
func (fl *follower) choose(files []listed) (listed, bool, error) {
	if len(files) == 0 {
		return listed{}, false, io.EOF
	}
	for _, fi := range files {
		if fi.Index > 0 && !fl.cursor.IsZero() {
			last, ok, err := lastTime(fi.File, fl.format)
			if errors.Is(err, fs.ErrNotExist) {
				// Renamed meanwhile: the caller lists again.
				return fi, true, nil
			}
			if err != nil {
				return listed{}, false, err
			}
			if ok && !last.After(fl.cursor) {
				continue
			}
		}
		return fi, true, nil
	}
	return listed{}, false, io.EOF
}

// open makes the file fi names the file being read, from offset (plain
// files).
func (fl *follower) open(fi logfile.File, offset int64) error {
	f, err := os.Open(fi.Path)
	if err != nil {
		return err
	}
	return fl.use(f, fi, offset)
}

// use makes f, the file fi lists, the file being read, from offset; it
// takes f over.
func (fl *follower) use(f *os.File, fi logfile.File, offset int64) error {
	var r io.Reader = f
	var zr *gzip.Reader
	var err error
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
	for attempt := 0; attempt < 50; attempt++ {
		err := fl.tryTail(n)
		if !errors.Is(err, errListingChanged) {
			return err
		}
	}
	return fmt.Errorf("tail %s: the log rotates faster than it can be read", fl.path)
}

var errListingChanged = errors.New("log files changed while tailing")

func (fl *follower) tryTail(n int) error {
	files, err := stableFiles(fl.path)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	need := n
	for i := len(files) - 1; i >= 0 && need > 0; i-- {
		fi := files[i]
		f, err := os.Open(fi.Path)
		if errors.Is(err, fs.ErrNotExist) {
			return errListingChanged
		}
		if err != nil {
			return err
		}
		st, err := f.Stat()
		if err != nil || !os.SameFile(st, fi.info) {
			f.Close()
			return errListingChanged
		}
		if fi.Compressed {
			count, err := countRecords(f, fl.format)
			if err != nil {
				f.Close()
				return fmt.Errorf("read %s: %w", fi.Path, err)
			}
			if count < need {
				f.Close()
				need -= count
				continue
			}
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				f.Close()
				return err
			}
			if err := fl.use(f, fi.File, 0); err != nil {
				return err
			}
			for range count - need {
				if _, err := fl.sc.Next(); err != nil && !errors.Is(err, logfile.ErrCorrupt) {
					return err
				}
			}
			return nil
		}
		off, found, err := logfile.TailOffset(f, st.Size(), fl.format, need)
		if err != nil {
			f.Close()
			return fmt.Errorf("tail %s: %w", fi.Path, err)
		}
		if found < need {
			f.Close()
			need -= found
			continue
		}
		return fl.use(f, fi.File, off)
	}
	// Fewer records than asked for: everything, from the oldest file.
	return nil
}

// countRecords counts the records of a gzipped file.
func countRecords(f *os.File, format logfile.Format) (int, error) {
	zr, err := gzip.NewReader(f)
	if err != nil {
		return 0, err
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
			return n, err
		}
	}
}
