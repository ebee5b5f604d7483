package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-dev/berth/runtime/namespace"
	"github.com/berth-dev/berth/runtime/shim/wire"
	"github.com/berth-dev/berth/runtime/spec"
)

// ContainerStats reads a container's figures. A container that does not
// run has only its writable layer measured.
func (m *Manager) ContainerStats(ctx context.Context, id string) (*ContainerStats, error) {
	st, err := m.ContainerCgroupStats(ctx, id)
	if err != nil {
		return nil, err
	}
	if st.WritableLayerPath != "" {
		st.WritableLayerBytes, st.WritableLayerInodes = diskUsage(st.WritableLayerPath)
	}
	return st, nil
}

// ContainerCgroupStats reads a running container's cgroup figures, as
// ContainerStats does but without measuring the writable layer (a walk of
// its whole tree): for callers that sample every second. A container that
// does not run has none.
func (m *Manager) ContainerCgroupStats(ctx context.Context, id string) (*ContainerStats, error) {
	c, err := m.getContainer(id)
	if err != nil {
		return nil, fmt.Errorf("stats of container: %w", err)
	}
	m.mu.Lock()
	state, cl, upper := c.rec.State, c.client, c.rec.UpperDir
	m.mu.Unlock()
	st := &ContainerStats{ID: c.rec.ID, Timestamp: time.Now(), WritableLayerPath: upper}
	if state == ContainerRunning && cl != nil {
		s, err := cl.Stats(ctx)
		if err != nil && !errdefs.IsUnavailable(err) {
			return nil, fmt.Errorf("stats of container %s: %w", c.rec.ID, err)
		}
		if err == nil {
			st.Timestamp = s.Timestamp
			st.CPUUsage = s.CPUUsage
			st.MemoryWorkingSet = s.MemoryWorkingSet
			st.MemoryUsage = s.MemoryUsage
			st.MemoryRSS = s.MemoryRSS
			st.PageFaults = s.PageFaults
			st.MajorPageFaults = s.MajorPageFaults
			st.Pids = s.Pids
			st.CPUUser, st.CPUSystem = s.CPUUser, s.CPUSystem
			st.CPUPeriods, st.CPUThrottledPeriods, st.CPUThrottledTime = s.CPUPeriods, s.CPUThrottledPeriods, s.CPUThrottledTime
			st.MemoryLimit, st.MemoryMaxUsage, st.MemoryFailcnt = s.MemoryLimit, s.MemoryMaxUsage, s.MemoryFailcnt
			st.MemoryStat = s.MemoryStat
			st.PidsLimit = s.PidsLimit
			st.IOServiceBytes, st.IOServiced = blkio(s.IOServiceBytes), blkio(s.IOServiced)
			st.Processes = s.Processes
		}
	}
	return st, nil
}

func blkio(in []wire.BlkioEntry) []BlkioEntry {
	if in == nil {
		return nil
	}
	out := make([]BlkioEntry, len(in))
	for i, e := range in {
		out[i] = BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value}
	}
	return out
}

// diskUsage sums the allocated bytes and counts the inodes below dir, each
// hard-linked inode once, as du does.
func diskUsage(dir string) (bytes, inodes uint64) {
	seen := map[uint64]bool{}
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		inodes++
		bytes += uint64(st.Blocks) * 512
		return nil
	})
	return bytes, inodes
}

// SandboxStats reads a pod's figures: the sum over its running containers
// and the interfaces of its network namespace.
func (m *Manager) SandboxStats(ctx context.Context, id string) (*SandboxStats, error) {
	s, err := m.getSandbox(id)
	if err != nil {
		return nil, fmt.Errorf("stats of sandbox: %w", err)
	}
	m.mu.Lock()
	netns := s.rec.NetNSPath
	m.mu.Unlock()
	out := &SandboxStats{ID: s.rec.ID, Timestamp: time.Now()}
	for _, c := range m.podContainers(s.rec.ID) {
		cs, err := m.ContainerStats(ctx, c.rec.ID)
		if errdefs.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stats of sandbox %s: %w", s.rec.ID, err)
		}
		out.Containers = append(out.Containers, *cs)
		out.CPUUsage += cs.CPUUsage
		out.MemoryWorkingSet += cs.MemoryWorkingSet
		out.MemoryUsage += cs.MemoryUsage
		out.MemoryRSS += cs.MemoryRSS
		out.PageFaults += cs.PageFaults
		out.MajorPageFaults += cs.MajorPageFaults
		out.Pids += cs.Pids
	}
	if out.Network, err = podNetwork(netns); err != nil {
		return nil, fmt.Errorf("stats of sandbox %s: %w", s.rec.ID, err)
	}
	return out, nil
}

// SandboxNetworkStats reads the interface counters of a sandbox's network
// namespace (lo left out); none on the host's network.
func (m *Manager) SandboxNetworkStats(ctx context.Context, id string) ([]InterfaceStats, error) {
	s, err := m.getSandbox(id)
	if err != nil {
		return nil, fmt.Errorf("network stats of sandbox: %w", err)
	}
	m.mu.Lock()
	netns := s.rec.NetNSPath
	m.mu.Unlock()
	ifs, err := podNetwork(netns)
	if err != nil {
		return nil, fmt.Errorf("stats of sandbox %s: %w", s.rec.ID, err)
	}
	return ifs, nil
}

// podNetwork reads the interface counters of a pod's network namespace;
// none without one (host network).
func podNetwork(netns string) ([]InterfaceStats, error) {
	if netns == "" {
		return nil, nil
	}
	var ifs []InterfaceStats
	err := namespace.Do(netns, func() error {
		// thread-self: /proc/self/net is the thread group leader's.
		b, err := os.ReadFile("/proc/thread-self/net/dev")
		if err != nil {
			return err
		}
		ifs = parseNetDev(b)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	return ifs, nil
}

// parseNetDev parses /proc/net/dev, leaving out lo.
func parseNetDev(b []byte) []InterfaceStats {
	var out []InterfaceStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := func(i int) uint64 { v, _ := strconv.ParseUint(f[i], 10, 64); return v }
		out = append(out, InterfaceStats{
			Name:    name,
			RxBytes: n(0), RxPackets: n(1), RxErrors: n(2), RxDropped: n(3),
			TxBytes: n(8), TxPackets: n(9), TxErrors: n(10), TxDropped: n(11),
		})
	}
	return out
}

// UpdateContainerResources changes a running or created container's
// cgroup limits and records them.
func (m *Manager) UpdateContainerResources(ctx context.Context, id string, r spec.Resources) error {
	c, err := m.getContainer(id)
	if err != nil {
		return fmt.Errorf("update container: %w", err)
	}
	c.op.Lock()
	defer c.op.Unlock()
	m.mu.Lock()
	state, cl := c.rec.State, c.client
	m.mu.Unlock()
	if state == ContainerExited || cl == nil {
		return fmt.Errorf("update container %s: it is %s: %w", c.rec.ID, state, errdefs.ErrFailedPrecondition)
	}
	if r, err = m.fitResources(ctx, c.rec.ID, r); err != nil {
		return fmt.Errorf("update container %s: %w", c.rec.ID, err)
	}
	lr, err := linuxResources(r)
	if err != nil {
		return fmt.Errorf("update container %s: %w", c.rec.ID, err)
	}
	if err := cl.Update(ctx, lr); err != nil {
		return fmt.Errorf("update container %s: %w", c.rec.ID, err)
	}
	m.mu.Lock()
	c.rec.Config.Spec.Resources = r
	m.mu.Unlock()
	if err := m.saveContainer(c); err != nil {
		return fmt.Errorf("update container %s: %w", c.rec.ID, err)
	}
	return nil
}

// linuxResources converts r the way spec.Generate does, through it, so
// that both agree.
func linuxResources(r spec.Resources) (*specs.LinuxResources, error) {
	dir, err := os.MkdirTemp("", "berth-resources-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	sp, err := spec.Generate(spec.Container{Args: []string{"true"}, Rootfs: dir, Resources: r})
	if err != nil {
		return nil, err
	}
	if sp.Linux == nil || sp.Linux.Resources == nil {
		return &specs.LinuxResources{}, nil
	}
	lr := *sp.Linux.Resources
	// Only limits: the device rules stay as created.
	lr.Devices = nil
	return &lr, nil
}

// PortForward connects stream to 127.0.0.1:port inside the pod's network
// namespace and copies both ways until either side closes; it closes
// stream.
func (m *Manager) PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	s, err := m.getSandbox(sandboxID)
	if err != nil {
		return fmt.Errorf("port forward: %w", err)
	}
	if port <= 0 || port > 65535 {
		return fmt.Errorf("port forward to sandbox %s: port %d: %w", s.rec.ID, port, errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	netns, state := s.rec.NetNSPath, s.rec.State
	m.mu.Unlock()
	if state != SandboxReady {
		return fmt.Errorf("port forward to sandbox %s: not ready: %w", s.rec.ID, errdefs.ErrFailedPrecondition)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	var conn net.Conn
	dial := func() error {
		var d net.Dialer
		var err error
		// The socket is made on this thread, so it lives in its namespace.
		conn, err = d.DialContext(ctx, "tcp", addr)
		return err
	}
	if netns == "" {
		err = dial()
	} else {
		err = namespace.Do(netns, dial)
	}
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s: dial %s: %w: %w", s.rec.ID, addr, errdefs.ErrUnavailable, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close(); stream.Close() })
	defer stop()
	var wg sync.WaitGroup
	var inErr error
	var done atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, err := io.Copy(conn, stream)
		if !done.Load() {
			// Not an error of ours closing the stream below.
			inErr = err
		}
		// Half-close: the server sees EOF and may still answer.
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, outErr := io.Copy(stream, conn)
	done.Store(true)
	stream.Close()
	conn.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	for _, err := range []error{outErr, inErr} {
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			return fmt.Errorf("port forward to sandbox %s port %d: %w", s.rec.ID, port, err)
		}
	}
	return nil
}
