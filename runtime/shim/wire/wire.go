// Package wire is the protocol between berthd (runtime/shim) and berth-shim
// (runtime/shim/monitor). It is plain Go with no cgo so that berthd can
// import it.
//
// Every operation is one connection to the shim's unix socket: the client
// writes one Request as a JSON line and reads one Response as a JSON line.
// Exec and Attach then switch the connection to a stream of Frames (see
// WriteFrame) carrying stdio, resizes and, for exec, the exit status.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// File names inside a container's state directory.
const (
	SocketName = "shim.sock"
	ExitName   = "exit.json"
	LogName    = "shim.log"
	PidName    = "shim.pid"
)

// Operations.
const (
	OpState     = "state"
	OpStart     = "start"
	OpSignal    = "signal"
	OpExec      = "exec"
	OpAttach    = "attach"
	OpResize    = "resize"
	OpWait      = "wait"
	OpStats     = "stats"
	OpUpdate    = "update"
	OpReopenLog = "reopen-log"
	OpDelete    = "delete"
	OpShutdown  = "shutdown"
	// OpPause and OpResume freeze and thaw the container's processes.
	OpPause  = "pause"
	OpResume = "resume"
)

// Container statuses reported in State.Status (libcontainer's words).
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusPaused  = "paused"
	StatusStopped = "stopped"
)

// Request is the first line a client writes on a connection.
type Request struct {
	Op string `json:"op"`
	// Signal is the signal number for OpSignal.
	Signal int `json:"signal,omitempty"`
	// Force makes OpDelete kill a running container first.
	Force     bool                  `json:"force,omitempty"`
	Exec      *Exec                 `json:"exec,omitempty"`
	Attach    *Attach               `json:"attach,omitempty"`
	Size      *Size                 `json:"size,omitempty"`
	Resources *specs.LinuxResources `json:"resources,omitempty"`
}

// Exec describes a new process in a running container.
type Exec struct {
	Process specs.Process `json:"process"`
	// Stdin asks for the process's stdin to be fed from Stdin frames;
	// without it the process reads /dev/null.
	Stdin bool `json:"stdin,omitempty"`
}

// Attach selects the container streams an attach connection carries.
type Attach struct {
	Stdin  bool `json:"stdin,omitempty"`
	Stdout bool `json:"stdout,omitempty"`
	Stderr bool `json:"stderr,omitempty"`
}

// Size is a terminal size.
type Size struct {
	Width  uint16 `json:"width"`
	Height uint16 `json:"height"`
}

// Response is the line the shim answers with.
type Response struct {
	// Error is set when the operation failed; Class says which errdefs
	// class it belongs to.
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`

	Pid   int    `json:"pid,omitempty"`
	State *State `json:"state,omitempty"`
	Exit  *Exit  `json:"exit,omitempty"`
	Stats *Stats `json:"stats,omitempty"`
}

// State is the shim's view of its container.
type State struct {
	ID        string    `json:"id"`
	Pid       int       `json:"pid"`
	ShimPid   int       `json:"shim_pid"`
	Status    string    `json:"status"`
	Terminal  bool      `json:"terminal,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	StartedAt time.Time `json:"started_at,omitzero"`
	// Exit is set once the container's init has exited.
	Exit *Exit `json:"exit,omitempty"`
}

// Exit is how a process ended. The shim writes the init's Exit to ExitName
// in the state directory as soon as it is known.
type Exit struct {
	Pid int `json:"pid"`
	// Code follows the shell convention: 128+signal when killed by one.
	Code int `json:"code"`
	// Signal is the signal that killed the process, 0 if it exited.
	Signal     int       `json:"signal,omitempty"`
	OOMKilled  bool      `json:"oom_killed,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at"`
}

// Stats are the container's cgroup figures.
type Stats struct {
	Timestamp time.Time `json:"timestamp"`
	// CPU times in nanoseconds.
	CPUUsage  uint64 `json:"cpu_usage"`
	CPUUser   uint64 `json:"cpu_user"`
	CPUSystem uint64 `json:"cpu_system"`
	// Memory in bytes; WorkingSet is usage less inactive file pages, as
	// the kubelet computes it.
	MemoryUsage      uint64 `json:"memory_usage"`
	MemoryWorkingSet uint64 `json:"memory_working_set"`
	MemoryRSS        uint64 `json:"memory_rss"`
	MemoryLimit      uint64 `json:"memory_limit"`
	PageFaults       uint64 `json:"page_faults"`
	MajorPageFaults  uint64 `json:"major_page_faults"`
	// Block I/O bytes, summed over devices.
	IOReadBytes  uint64 `json:"io_read_bytes"`
	IOWriteBytes uint64 `json:"io_write_bytes"`
	Pids         uint64 `json:"pids"`
	PidsLimit    uint64 `json:"pids_limit"`

	// The figures below feed the CRI metrics (cAdvisor's container_*).

	// CFS bandwidth: elapsed and throttled periods, throttled time in ns.
	CPUPeriods          uint64 `json:"cpu_periods,omitempty"`
	CPUThrottledPeriods uint64 `json:"cpu_throttled_periods,omitempty"`
	CPUThrottledTime    uint64 `json:"cpu_throttled_time,omitempty"`
	// CPUShares and CPUPeriod are the cgroup's settings as read back (v2
	// weight converted to shares), 0 when unreadable.
	CPUShares uint64 `json:"cpu_shares,omitempty"`
	CPUPeriod uint64 `json:"cpu_period,omitempty"`
	// CPUQuota is the CFS quota in microseconds, 0 when unlimited.
	CPUQuota uint64 `json:"cpu_quota,omitempty"`
	// MemoryReservation is the soft limit (v1 memory.soft_limit_in_bytes,
	// v2 memory.low), 0 when unreadable.
	MemoryReservation uint64 `json:"memory_reservation,omitempty"`
	// Memory detail in bytes.
	MemoryCache      uint64 `json:"memory_cache,omitempty"`
	MemoryMappedFile uint64 `json:"memory_mapped_file,omitempty"`
	MemoryKernel     uint64 `json:"memory_kernel,omitempty"`
	MemorySwap       uint64 `json:"memory_swap,omitempty"`
	MemoryMaxUsage   uint64 `json:"memory_max_usage,omitempty"`
	MemoryFailcnt    uint64 `json:"memory_failcnt,omitempty"`
	// MemorySwapLimit is the memory+swap limit (v1 memsw).
	MemorySwapLimit uint64 `json:"memory_swap_limit,omitempty"`
	// MemoryStat is the cgroup's memory.stat as the kernel writes it
	// (v1: cache, rss, total_inactive_file, ...; v2: anon, file,
	// inactive_file, ...): Docker's stats report it whole, and its CLI
	// tells the cgroup version by the keys.
	MemoryStat map[string]uint64 `json:"memory_stat,omitempty"`
	// PageFaults above are hierarchical; these count the cgroup alone.
	OwnPageFaults      uint64 `json:"own_page_faults,omitempty"`
	OwnMajorPageFaults uint64 `json:"own_major_page_faults,omitempty"`
	OOMKills           uint64 `json:"oom_kills,omitempty"`
	// Per-device block I/O: bytes and operations by op (Read, Write, ...).
	IOServiceBytes []BlkioEntry `json:"io_service_bytes,omitempty"`
	IOServiced     []BlkioEntry `json:"io_serviced,omitempty"`
	// Hugetlb usage by page size ("2MB", "1GB").
	Hugetlb map[string]Hugetlb `json:"hugetlb,omitempty"`
	// Processes are the host PIDs in the container's cgroup.
	Processes []int `json:"processes,omitempty"`
	// Pressure is the cgroup's pressure stall information (cgroup v2
	// only; nil on v1).
	Pressure *Pressure `json:"pressure,omitempty"`
}

// Pressure holds the total stall times, in microseconds, of the "some"
// (at least one task waiting) and "full" (all tasks stalled) lines of
// cpu.pressure, memory.pressure and io.pressure.
type Pressure struct {
	CPUSome    uint64 `json:"cpu_some"`
	CPUFull    uint64 `json:"cpu_full"`
	MemorySome uint64 `json:"memory_some"`
	MemoryFull uint64 `json:"memory_full"`
	IOSome     uint64 `json:"io_some"`
	IOFull     uint64 `json:"io_full"`
}

// BlkioEntry is one device's counter for one operation.
type BlkioEntry struct {
	Major uint64 `json:"major"`
	Minor uint64 `json:"minor"`
	Op    string `json:"op"`
	Value uint64 `json:"value"`
}

// Hugetlb is one page size's usage in bytes.
type Hugetlb struct {
	Usage    uint64 `json:"usage"`
	MaxUsage uint64 `json:"max_usage"`
}

// Ready is the line the shim writes on its ready pipe (fd 3) once the
// container is created (and started, unless asked not to) and the socket
// listens, or once it failed.
type Ready struct {
	Pid   int    `json:"pid,omitempty"`
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`
}

// Job is the one line berth-shim (run --standby) reads on fd 4: the
// container it is to create. EOF instead of a job makes it exit: berthd
// closed it or died.
type Job struct {
	ID         string `json:"id"`
	Bundle     string `json:"bundle"`
	StateDir   string `json:"state_dir"`
	LogPath    string `json:"log_path,omitempty"`
	Log        Log    `json:"log,omitzero"`
	Stdin      bool   `json:"stdin,omitempty"`
	StdinOnce  bool   `json:"stdin_once,omitempty"`
	CreateOnly bool   `json:"create_only,omitempty"`
	// SeccompCache: see monitor.Options.
	SeccompCache string `json:"seccomp_cache,omitempty"`
}

// Log is how the shim writes the container's log file (see
// runtime/logfile). The zero value is the kubelet's CRI format, which the
// shim never rotates.
type Log struct {
	// Format is "" (CRI), "json-file" or "local".
	Format string `json:"format,omitempty"`
	// MaxSize rotates the file once it holds this many bytes; MaxFiles
	// files are kept (1: the file is truncated instead).
	MaxSize  int64 `json:"max_size,omitempty"`
	MaxFiles int   `json:"max_files,omitempty"`
	// Compress gzips rotated files.
	Compress bool `json:"compress,omitempty"`
	// Attrs go into every json-file record.
	Attrs map[string]string `json:"attrs,omitempty"`
	// NonBlocking buffers up to MaxBuffer bytes and drops what does not
	// fit, rather than block the container on the disk.
	NonBlocking bool  `json:"non_blocking,omitempty"`
	MaxBuffer   int64 `json:"max_buffer,omitempty"`
}

// Frame kinds.
const (
	FrameStdin      byte = 1 // client -> shim
	FrameCloseStdin byte = 2 // client -> shim, no payload
	FrameResize     byte = 3 // client -> shim, payload: width, height as 2+2 bytes big endian
	FrameStdout     byte = 4 // shim -> client
	FrameStderr     byte = 5 // shim -> client
	FrameExit       byte = 6 // shim -> client, payload: JSON Exit; last frame
)

// MaxFrame bounds a frame's payload so a corrupt length cannot make either
// side allocate gigabytes.
const MaxFrame = 1 << 20

// WriteFrame writes one frame: kind, 4-byte big-endian length, payload.
// Callers serialise writes to one writer.
func WriteFrame(w io.Writer, kind byte, payload []byte) error {
	if len(payload) > MaxFrame {
		return fmt.Errorf("write frame of %d bytes: %w", len(payload), errdefs.ErrInvalidArgument)
	}
	var hdr [5]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(payload)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	if len(payload) == 0 {
		return nil
	}
	_, err := w.Write(payload)
	return err
}

// ReadFrame reads one frame written by WriteFrame.
func ReadFrame(r io.Reader) (kind byte, payload []byte, err error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("read frame of %d bytes: %w", n, errdefs.ErrInvalidArgument)
	}
	payload = make([]byte, n)
	if _, err := io.ReadFull(r, payload); err != nil {
		return 0, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return hdr[0], payload, nil
}

// ResizePayload encodes a Size for FrameResize.
func ResizePayload(s Size) []byte {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], s.Width)
	binary.BigEndian.PutUint16(b[2:], s.Height)
	return b[:]
}

// ParseResize decodes a FrameResize payload.
func ParseResize(b []byte) (Size, error) {
	if len(b) != 4 {
		return Size{}, fmt.Errorf("resize frame of %d bytes: %w", len(b), errdefs.ErrInvalidArgument)
	}
	return Size{Width: binary.BigEndian.Uint16(b[0:]), Height: binary.BigEndian.Uint16(b[2:])}, nil
}

// classes maps errdefs classes to the names used on the wire; the order
// matters only for errors carrying several classes.
var classes = []struct {
	name string
	err  error
}{
	{"not-found", errdefs.ErrNotFound},
	{"already-exists", errdefs.ErrAlreadyExists},
	{"invalid-argument", errdefs.ErrInvalidArgument},
	{"failed-precondition", errdefs.ErrFailedPrecondition},
	{"unavailable", errdefs.ErrUnavailable},
	{"not-implemented", errdefs.ErrNotImplemented},
	{"conflict", errdefs.ErrConflict},
	{"permission-denied", errdefs.ErrPermissionDenied},
	{"resource-exhausted", errdefs.ErrResourceExhausted},
}

// Class names the errdefs class of err, "" when it has none.
func Class(err error) string {
	for _, c := range classes {
		if errors.Is(err, c.err) {
			return c.name
		}
	}
	return ""
}

// Error rebuilds an error sent over the wire: its message unchanged, its
// class again visible to errors.Is.
func Error(msg, class string) error {
	for _, c := range classes {
		if c.name == class {
			return &remoteError{msg: msg, class: c.err}
		}
	}
	return errors.New(msg)
}

type remoteError struct {
	msg   string
	class error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.class }
