package runtime

import "testing"

func TestPickProcsFile(t *testing.T) {
	const hybrid = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw,relatime shared:10 - cgroup2 cgroup2 rw
33 30 0:29 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
34 30 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
`
	const nested = `31 30 0:27 /kubepods/pod1 /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw,nsdelegate
`
	for _, tc := range []struct {
		name, mountinfo, cgroup, want string
	}{
		{"hybrid, v2 line first", hybrid, "0::/\n3:pids:/berthd\n", "/sys/fs/cgroup/unified/cgroup.procs"},
		{"v1 only", hybrid, "3:pids:/berthd\n2:cpu,cpuacct:/x\n", "/sys/fs/cgroup/pids/berthd/cgroup.procs"},
		{"v1 comounted", hybrid, "2:cpu,cpuacct:/x\n", "/sys/fs/cgroup/cpu,cpuacct/x/cgroup.procs"},
		{"mount root stripped", nested, "0::/kubepods/pod1/berthd\n", "/sys/fs/cgroup/berthd/cgroup.procs"},
		{"outside the mount root", nested, "0::/other\n", ""},
		{"favordynmods: off", "31 30 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate,favordynmods\n", "0::/\n", ""},
		{"no cgroup mounts", "22 1 254:0 / / rw - ext4 /dev/vda rw\n", "0::/\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := pickProcsFile(tc.mountinfo, tc.cgroup); got != tc.want {
				t.Errorf("pickProcsFile = %q, want %q", got, tc.want)
			}
		})
	}
}
