package dockerapi

import (
	"bufio"
	"bytes"
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

func (s *server) info(w http.ResponseWriter, r *http.Request) error {
	// /info is what clients call to see whether the daemon works at all, so
	// a store that cannot list is a warning, not a failed request.
	var warnings []string
	imgs, err := s.images.List(r.Context())
	if err != nil {
		warnings = append(warnings, "list images: "+err.Error())
	}
	hostname, _ := os.Hostname()
	cgroupVersion := "1"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		cgroupVersion = "2"
	}
	writeJSON(w, http.StatusOK, system.Info{
		ID:                 hostname,
		Images:             len(imgs),
		Driver:             "overlayfs",
		DriverStatus:       [][2]string{{"Root Dir", s.opts.Root}},
		LoggingDriver:      "json-file",
		CgroupDriver:       "cgroupfs",
		CgroupVersion:      cgroupVersion,
		KernelVersion:      kernelVersion(),
		OperatingSystem:    osRelease(),
		OSType:             runtime.GOOS,
		Architecture:       machine(),
		IndexServerAddress: "https://index.docker.io/v1/",
		NCPU:               runtime.NumCPU(),
		MemTotal:           memTotal(),
		DockerRootDir:      s.opts.Root,
		Name:               hostname,
		ServerVersion:      s.opts.Version,
		NGoroutines:        runtime.NumGoroutine(),
		SystemTime:         time.Now().Format(time.RFC3339Nano),
		DefaultRuntime:     "berth",
		Labels:             []string{},
		SecurityOptions:    []string{},
		Warnings:           append([]string{}, warnings...),
		// docker info prints a swarm section; say there is none.
		Swarm: swarm.Info{LocalNodeState: swarm.LocalNodeStateInactive},
	})
	return nil
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
