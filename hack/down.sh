#!/usr/bin/env bash
# `make down`: stop what hack/up.sh started, and only that: the PIDs recorded
# in _output/pids, each checked to still be the program it was.
set -euo pipefail
cd "$(dirname "$0")/.."

PIDS="$PWD/_output/pids"
shopt -s nullglob

# alive PID: running and not a zombie waiting for PID 1 to reap it.
alive() {
	local s
	s="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
	[ -n "$s" ] && [ "$s" != Z ]
}

# The first standalone container and the first pod go before berthd: they
# would outlive berthd (that is their design), so make down removes them
# through berthd's own APIs.
if [ -S _output/run/docker.sock ] && [ -x bin/berth ]; then
	if BERTH_HOST="unix://$PWD/_output/run/docker.sock" bin/berth rm -f hello >/dev/null 2>&1; then
		echo "==> removed the container hello"
	fi
fi
if [ -f _output/first/pod.id ] && [ -S _output/run/berth.sock ] && [ -x _output/tools/crictl ] && [ -f _output/crictl.yaml ]; then
	pod="$(cat _output/first/pod.id)"
	echo "==> removing the first pod ($pod)"
	_output/tools/crictl --config _output/crictl.yaml stopp "$pod" >/dev/null || true
	_output/tools/crictl --config _output/crictl.yaml rmp "$pod" >/dev/null || true
	rm -f _output/first/pod.id
fi

# berthd next, so that it does not see its registry vanish mid-pull.
for name in berthd registry; do
	f="$PIDS/$name.pid"
	[ -f "$f" ] || continue
	pid="$(cat "$f")"
	# A recycled PID must not be killed: check the command line.
	if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "$name"; then
		echo "==> stopping $name (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 100); do
			alive "$pid" || break
			sleep 0.1
		done
		if alive "$pid"; then
			echo "==> $name did not stop in 10 s, killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	else
		echo "==> $name (pid $pid) is not running"
	fi
	rm -f "$f"
done
rmdir "$PIDS" 2>/dev/null || true
