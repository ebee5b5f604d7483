package cri

import "regexp"

// snapshotName matches the snapshots CreateContainer makes: the container's
// ID, or imageVolumeID's <id>-iv<n>.
var snapshotName = regexp.MustCompile(`^([0-9a-f]{64})(-iv[0-9]+)?$`)

// HoldsSnapshot says whether name is a snapshot CreateContainer names (a
// container's rootfs or image volume) and whether one of the CRI's
// containers still holds it. berthd's start-up sweep asks every front and
// removes only what some front names and none holds: a 64-hex name is the
// CRI's scheme, but not only the CRI's.
func (s *RuntimeService) HoldsSnapshot(name string) (mine, held bool) {
	m := snapshotName.FindStringSubmatch(name)
	if m == nil {
		return false, false
	}
	_, err := s.opts.Containers.Container(m[1])
	return true, err == nil
}
