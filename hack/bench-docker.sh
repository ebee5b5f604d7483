#!/usr/bin/env bash
# Standalone container benchmark: the same stock docker CLI against berthd
# and against Debian's dockerd 20.10 (apt docker.io, installed if missing,
# never as a service), both on temp dirs, both running at once.
#
#   hack/bench-docker.sh [--runs N] [--containers N] [--berth-only | --dockerd-only]
#
# Timings, interleaved (berthd, dockerd, dockerd, berthd, ...) so that the
# machine's drift hits both alike, N times each (default 30):
#   run-rm    `docker run --rm IMAGE true`, the CLI's wall time (create,
#             attach, start, wait, remove);
#   run-d+rm  `docker run -d IMAGE sleep 600` then `docker rm -f ID`, the
#             two commands' wall time together.
# Memory: --containers (default 50) `docker run -d IMAGE sleep 600` on one
# daemon at a time, then the resident memory of the daemon side: berthd and
# its berth-shim processes; dockerd, its containerd and the
# containerd-shim-runc-v2 processes. RSS and PSS (shared pages divided
# among the processes that map them) from /proc/<pid>/smaps_rollup, and the
# kernel memory the containers' cgroups charge is not counted (the same
# sleep processes on both sides).
#
# Prints medians and the ratios berth/dockerd (goals: <= 0.5 for both
# timings and for the memory). Raw data: _output/bench-docker/. KEEP=1 keeps
# the temp dir. Needs root. Stops only what it started, removes its
# bridges and their iptables rules, and dockerd's chains when no other
# dockerd runs (hack/lib-docker-bench.sh).
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-docker
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# shellcheck source=lib-docker-bench.sh
. hack/lib-docker-bench.sh

RUNS=30 CONTAINERS=50 DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--runs) RUNS="$2"; shift ;;
	--containers) CONTAINERS="$2"; shift ;;
	*) bench_flag "$1" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the daemons mount, create namespaces, bridges and rules)"
# The stock CLI (28.x), not Debian's, for both daemons.
DOCKER="${DOCKER:-/usr/local/bin/docker}"
[ -x "$DOCKER" ] || DOCKER="$(command -v docker || true)"
[ -n "$DOCKER" ] || die "no docker CLI (hack/install-deps.sh)"

# Our own share of 10.x and our own bridge names, so that nothing else on
# the machine (another benchmark, a test daemon) is touched.
B2=$((150 + $$ % 40))
bench_init bd

for daemon in "${DAEMONS[@]}"; do
	say "starting $daemon"
	bench_start "$daemon"
	dk "$daemon" pull -q "$IMAGE" >/dev/null
	# One of each first, not measured: caches warm for both.
	dk "$daemon" run --rm "$IMAGE" true
	dk "$daemon" rm -f "$(dk "$daemon" run -d "$IMAGE" sleep 600)" >/dev/null
	mkdir -p "$OUT/$daemon"
	: >"$OUT/$daemon/run_rm_us"
	: >"$OUT/$daemon/run_d_rm_us"
done

say "timings: $RUNS runs of each, interleaved"
for i in $(seq "$RUNS"); do
	bench_order "$i"
	for daemon in "${ORDER[@]}"; do
		t0="$(now_us)"
		dk "$daemon" run --rm "$IMAGE" true
		echo $(($(now_us) - t0)) >>"$OUT/$daemon/run_rm_us"
		t0="$(now_us)"
		id="$(dk "$daemon" run -d "$IMAGE" sleep 600)"
		dk "$daemon" rm -f "$id" >/dev/null
		echo $(($(now_us) - t0)) >>"$OUT/$daemon/run_d_rm_us"
	done
done

# pids_of DAEMON: the daemon side's processes.
pids_of() {
	local p exe
	case "$1" in
	berth)
		local bpid
		bpid="$(cat "$T/berth/berthd.pid")"
		echo "$bpid"
		for p in /proc/[0-9]*; do
			exe="$(readlink "$p/exe" 2>/dev/null)" || continue
			[ "$exe" = "$BIN/berth-shim" ] || continue
			# This berthd's shims hold files under its state dir; the one
			# on standby for the next container is its child.
			if find "$p/fd" -lname "$T/berth/run/*" 2>/dev/null | grep -q . ||
				[ "$(awk '{print $4}' "$p/stat" 2>/dev/null)" = "$bpid" ]; then
				echo "${p#/proc/}"
			fi
		done
		;;
	dockerd)
		local dpid
		dpid="$(cat "$T/dockerd/dockerd.pid")"
		echo "$dpid"
		for p in /proc/[0-9]*; do
			{ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -qE "containerd(-shim-runc-v2)? .*$T/dockerd/" && echo "${p#/proc/}"
		done
		;;
	esac
}
mem_kb() { awk -v k="$1" '$1 == k":" {print $2}' "/proc/$2/smaps_rollup" 2>/dev/null || echo 0; }

for daemon in "${DAEMONS[@]}"; do
	say "$daemon: $CONTAINERS sleep containers"
	for i in $(seq "$CONTAINERS"); do
		dk "$daemon" run -d --name "m$i" "$IMAGE" sleep 600 >/dev/null
	done
	sleep 3
	rss=0 pss=0 n=0
	for p in $(pids_of "$daemon"); do
		rss=$((rss + $(mem_kb Rss "$p"))) pss=$((pss + $(mem_kb Pss "$p"))) n=$((n + 1))
		printf '%s %s %s\n' "$p" "$({ tr '\0' ' ' <"/proc/$p/cmdline"; } 2>/dev/null | cut -c1-80)" "$(mem_kb Rss "$p")" >>"$OUT/$daemon/processes"
	done
	echo "$rss" >"$OUT/$daemon/rss_kb"
	echo "$pss" >"$OUT/$daemon/pss_kb"
	echo "$n" >"$OUT/$daemon/nprocs"
	dk "$daemon" rm -f $(seq -f 'm%g' "$CONTAINERS") >/dev/null
done

table 40 median
row "docker run --rm true (us)" "$(val berth run_rm_us median)" "$(val dockerd run_rm_us median)"
row "docker run -d + rm -f (us)" "$(val berth run_d_rm_us median)" "$(val dockerd run_d_rm_us median)"
row "RSS, $CONTAINERS containers (kB)" "$(val berth rss_kb cat)" "$(val dockerd rss_kb cat)"
row "PSS, $CONTAINERS containers (kB)" "$(val berth pss_kb cat)" "$(val dockerd pss_kb cat)"
row "  processes counted" "$(val berth nprocs cat)" "$(val dockerd nprocs cat)"
