package dockerapi

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/moby/moby/api/types/swarm"
	"github.com/moby/moby/api/types/system"
	"golang.org/x/sys/unix"
)

func (s *server) ping(w http.ResponseWriter, r *http.Request) error {
	h := w.Header()
	h.Set("API-Version", maxAPIVersion)
	h.Set("OSType", runtime.GOOS)
	h.Set("Docker-Experimental", "false")
	h.Set("Swarm", "inactive")
	h.Set("Cache-Control", "no-cache, no-store, must-revalidate")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	if r.Method == http.MethodHead {
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
		return nil
	}
	_, _ = w.Write([]byte("OK"))
	return nil
}

func (s *server) version(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, system.VersionResponse{
		Platform:      system.PlatformInfo{Name: "Berth"},
		Version:       s.opts.Version,
		APIVersion:    maxAPIVersion,
		MinAPIVersion: minAPIVersion,
		Os:            runtime.GOOS,
		Arch:          runtime.GOARCH,
		GoVersion:     runtime.Version(),
		KernelVersion: kernelVersion(),
		Components: []system.ComponentVersion{{
			Name:    "Engine",
			Version: s.opts.Version,
			Details: map[string]string{
				"ApiVersion":    maxAPIVersion,
				"MinAPIVersion": minAPIVersion,
				"Os":            runtime.GOOS,
				"Arch":          runtime.GOARCH,
				"GoVersion":     runtime.Version(),
				"KernelVersion": kernelVersion(),
			},
		}},
	})
	return nil
}

// info answers /info. Each part of the answer comes from the part of Berth
// that knows it (host, images, runtime); a new part adds its own fill.
func (s *server) info(w http.ResponseWriter, r *http.Request) error {
	var info system.Info
	s.hostInfo(&info)
	s.imageInfo(r.Context(), &info)
	s.runtimeInfo(&info)
	s.engineInfo(r.Context(), &info)
	if info.Warnings == nil {
		info.Warnings = []string{}
	}
	writeJSON(w, http.StatusOK, info)
	return nil
}

// hostInfo fills what the machine and berthd itself say.
func (s *server) hostInfo(info *system.Info) {
	hostname, _ := os.Hostname()
	info.ID = hostname
	info.Name = hostname
	info.KernelVersion = kernelVersion()
	info.OperatingSystem = osRelease()
	info.OSType = runtime.GOOS
	info.Architecture = machine()
	info.IndexServerAddress = "https://index.docker.io/v1/"
	info.NCPU = runtime.NumCPU()
	info.MemTotal = memTotal()
	info.DockerRootDir = s.opts.Root
	info.ServerVersion = s.opts.Version
	info.NGoroutines = runtime.NumGoroutine()
	info.SystemTime = time.Now().Format(time.RFC3339Nano)
	info.Labels = []string{}
	info.SecurityOptions = []string{}
	// docker info prints a swarm section; say there is none.
	info.Swarm = swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive}
}

// imageInfo fills the image store's part. /info is what clients call to
// see whether the daemon works at all, so a store that cannot list is a
// warning, not a failed request.
func (s *server) imageInfo(ctx context.Context, info *system.Info) {
	imgs, err := s.images.List(ctx)
	if err != nil {
		info.Warnings = append(info.Warnings, "list images: "+err.Error())
	}
	info.Images = len(imgs)
	info.Driver = "overlayfs"
	info.DriverStatus = [][2]string{{"Root Dir", s.opts.Root}}
}

// runtimeInfo fills the runtime's part: its drivers as berthd configured
// them.
func (s *server) runtimeInfo(info *system.Info) {
	info.CgroupDriver = s.opts.CgroupDriver
	info.CgroupVersion = "1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		info.CgroupVersion = "2"
	}
	info.LoggingDriver = s.opts.LoggingDriver
	info.DefaultRuntime = "berth"
}

// engineInfo fills the standalone engine's counts of containers by state.
func (s *server) engineInfo(ctx context.Context, info *system.Info) {
	if s.engine == nil {
		return
	}
	for _, c := range s.engine.List(ctx) {
		info.Containers++
		switch {
		case c.State.Paused:
			info.ContainersPaused++
		case c.State.Running:
			info.ContainersRunning++
		default:
			info.ContainersStopped++
		}
	}
}

func uname() unix.Utsname {
	var u unix.Utsname
	_ = unix.Uname(&u)
	return u
}

func kernelVersion() string {
	u := uname()
	return unix.ByteSliceToString(u.Release[:])
}

// machine is uname -m ("x86_64"), which is what docker reports, not GOARCH.
func machine() string {
	u := uname()
	return unix.ByteSliceToString(u.Machine[:])
}

func osRelease() string {
	b, err := os.ReadFile("/etc/os-release")
	if err != nil {
		return runtime.GOOS
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"'`)
		}
	}
	return runtime.GOOS
}

func memTotal() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
