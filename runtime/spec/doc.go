// Package spec turns plain Go values describing one container into an OCI
// runtime spec (runtime-spec v1.x) that runc's libcontainer can run.
//
// The inputs carry no CRI or Docker types: the front ends (cri/, dockerapi/)
// translate their requests into a [Container] and call [Generate]. The
// defaults follow containerd's CRI plugin so that a pod behaves the same on
// Berth as on containerd: the same default capability set, masked and
// read-only /proc and /sys paths, default mounts, seccomp profile (moby's
// default for RuntimeDefault) and user/group resolution from the image's
// /etc/passwd and /etc/group.
//
// Generate is deterministic for a given input and root filesystem, apart
// from the RuntimeDefault seccomp profile, whose rules depend on the running
// kernel's version (as in containerd and Docker), and the AppArmor profile,
// which is only set on kernels that have AppArmor (see [AppArmorEnabled]).
// Host facts that containerd reads implicitly (the daemon's own capability
// set, its oom_score_adj, the host's device nodes) are explicit inputs here;
// [CurrentCapabilities], [CurrentOOMScoreAdj], [HostDevices] and
// [DevicesFromPath] read them for the caller.
//
// Errors are classified with github.com/containerd/errdefs: a bad input is
// ErrInvalidArgument, a user or group missing from the image is ErrNotFound,
// a feature that Berth does not provide yet is ErrNotImplemented.
package spec
