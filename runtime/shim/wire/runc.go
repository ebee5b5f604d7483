package wire

// RuncResult is the one JSON line berth-runc, the monitor's short-lived
// libcontainer helper (runtime/shim/libct), prints on its stdout for every
// command. Error and Class are set when the command failed (berth-runc then
// exits 1); the other fields depend on the command.
type RuncResult struct {
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`

	// Pid is the host PID of the process create or exec started.
	Pid int `json:"pid,omitempty"`
	// CgroupPaths are the container's cgroup directories by controller
	// (v1) or under "" (v2), from create: the monitor reads the OOM
	// counter there when the init exits.
	CgroupPaths map[string]string `json:"cgroup_paths,omitempty"`
}
