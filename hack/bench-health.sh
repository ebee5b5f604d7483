#!/usr/bin/env bash
# Healthcheck load: what N containers probed every second cost berthd and
# the shims, against the same N containers without a healthcheck.
#
#   hack/bench-health.sh [--containers N] [--seconds S] [--interval D]
#
# berthd runs on a temp dir with the stock docker CLI against it. Phase
# "idle": N `sleep` containers (--network none) without a healthcheck;
# phase "health": N others with `--health-cmd true --health-interval D`
# (default 1s), once all are healthy. Each phase measures S seconds
# (default 60) of CPU time from /proc/<pid>/stat:
#   berthd        its own user+system time;
#   shims         the berth-shims' own time;
#   shims+execs   with their reaped children (berth-runc exec, runc init,
#                 the probes themselves);
# as % of one CPU, and the probes run per second (exec_die events of a
# live `docker events` stream during the phase). Raw data: _output/bench-health/.
# KEEP=1 keeps the temp dir. Needs root. Stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-health
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh

N=100 SECONDS_=60 INTERVAL=1s
while (($#)); do
	case "$1" in
	--containers) N="$2"; shift ;;
	--seconds) SECONDS_="$2"; shift ;;
	--interval) INTERVAL="$2"; shift ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (berthd mounts and creates namespaces and cgroups)"
DOCKER="${DOCKER:-$(command -v docker || true)}"
[ -n "$DOCKER" ] || die "no docker CLI (hack/install-deps.sh)"

CT_BRIDGE="bh$$" # no pod network here; a name no one else uses
ct_init
OUT="$REPO/_output/bench-health"
rm -rf "$OUT"
mkdir -p "$OUT"
ct_bin
ct_busybox

d="$T/berth"
mkdir -p "$d/certs.d/$REG"
printf 'server = "http://%s"\n' "$REG" >"$d/certs.d/$REG/hosts.toml"
cat >"$d/config.toml" <<TOML
root = "$d/root"
state = "$d/run"
docker_listen = "$d/docker.sock"
[images]
registry_config_dir = "$d/certs.d"
[nri]
disable = true
TOML
ct_start "$d/berthd.log" "$BIN/berthd" --config "$d/config.toml"
BERTHD=$LAST_PID
ct_wait_socket "$d/docker.sock" "$d/berthd.log"
export DOCKER_HOST="unix://$d/docker.sock"
dk() { "$DOCKER" "$@"; }
dk pull -q "$IMAGE" >/dev/null

HZ="$(getconf CLK_TCK)"
# ticks PID...: utime+stime, and with cutime+cstime, summed.
ticks() {
	local own=0 all=0 p f
	for p in "$@"; do
		f="$(cut -d')' -f2 "/proc/$p/stat" 2>/dev/null)" || continue
		# Fields after the command: state is 1, utime 12, stime 13,
		# cutime 14, cstime 15.
		read -r -a s <<<"$f"
		own=$((own + s[11] + s[12]))
		all=$((all + s[11] + s[12] + s[13] + s[14]))
	done
	echo "$own $all"
}
shims() {
	local p
	for p in /proc/[0-9]*; do
		[ "$(cat "$p/comm" 2>/dev/null)" = berth-shim ] || continue
		find "$p/fd" -lname "$d/run/*" 2>/dev/null | grep -q . && echo "${p#/proc/}"
	done
}
pct() { awk -v t="$1" -v hz="$HZ" -v s="$SECONDS_" 'BEGIN {printf "%.1f", 100 * t / hz / s}'; }

measure() {
	local phase="$1"
	local sh
	mapfile -t sh < <(shims)
	say "$phase: ${#sh[@]} shims, measuring ${SECONDS_}s"
	# The probes are counted off a live event stream: --since replays
	# only the bus's last 1024 events (three per probe), which capped the
	# count at ~11 probes/s over 30 s.
	dk events --filter event=exec_die --format '{{.ID}}' >"$OUT/$phase.exec_die" 2>/dev/null &
	local events=$!
	sleep 0.5
	read -r b0 _ < <(ticks "$BERTHD")
	read -r s0 a0 < <(ticks "${sh[@]}")
	local n0
	n0="$(wc -l <"$OUT/$phase.exec_die")"
	sleep "$SECONDS_"
	read -r b1 _ < <(ticks "$BERTHD")
	read -r s1 a1 < <(ticks "${sh[@]}")
	local probes
	probes=$(($(wc -l <"$OUT/$phase.exec_die") - n0))
	kill "$events" 2>/dev/null
	wait "$events" 2>/dev/null || true
	printf '%s berthd=%s shims=%s shims+execs=%s probes_per_s=%s\n' "$phase" \
		"$(pct $((b1 - b0)))" "$(pct $((s1 - s0)))" "$(pct $((a1 - a0)))" \
		"$(awk -v p="$probes" -v s="$SECONDS_" 'BEGIN {printf "%.1f", p / s}')" | tee -a "$OUT/result"
}

say "idle: $N containers without a healthcheck"
for i in $(seq "$N"); do dk run -d --network none --name "i$i" "$IMAGE" sleep 3600 >/dev/null; done
measure idle
dk rm -f $(seq -f 'i%g' "$N") >/dev/null

say "health: $N containers probed every $INTERVAL"
for i in $(seq "$N"); do
	dk run -d --network none --name "h$i" --health-cmd true --health-interval "$INTERVAL" "$IMAGE" sleep 3600 >/dev/null
done
for _ in $(seq 120); do
	[ "$(dk ps --filter health=healthy -q | wc -l)" -ge "$N" ] && break
	sleep 1
done
[ "$(dk ps --filter health=healthy -q | wc -l)" -ge "$N" ] || die "not all $N containers became healthy"
measure health
unhealthy="$(dk ps --filter health=unhealthy -q | wc -l)"
echo "unhealthy after the run: $unhealthy" | tee -a "$OUT/result"
dk rm -f $(seq -f 'h%g' "$N") >/dev/null
unset DOCKER_HOST
echo
cat "$OUT/result"
