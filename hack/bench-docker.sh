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
# bridges and the iptables chains dockerd added.
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-docker
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh

RUNS=30 CONTAINERS=50 DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--runs) RUNS="$2"; shift ;;
	--containers) CONTAINERS="$2"; shift ;;
	--berth-only) DAEMONS=(berth) ;;
	--dockerd-only) DAEMONS=(dockerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the daemons mount, create namespaces, bridges and rules)"
# The stock CLI (28.x), not Debian's, for both daemons.
DOCKER="${DOCKER:-/usr/local/bin/docker}"
[ -x "$DOCKER" ] || DOCKER="$(command -v docker || true)"
[ -n "$DOCKER" ] || die "no docker CLI (hack/install-deps.sh)"

if [[ " ${DAEMONS[*]} " == *" dockerd "* ]] && ! command -v dockerd >/dev/null; then
	say "installing Debian's docker.io (dockerd 20.10), not started as a service"
	export DEBIAN_FRONTEND=noninteractive
	policy=/usr/sbin/policy-rc.d
	made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	apt-get install -y -q --no-install-recommends docker.io >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends docker.io >/dev/null; }
	((made_policy)) && rm -f "$policy"
fi

ct_init
# Our own share of 10.x and our own bridge names, so that nothing else on
# the machine (another benchmark, a test daemon) is touched.
B2=$((150 + $$ % 40))
BERTH_POOL="10.$B2.0.0/21"
DOCKERD_POOL="10.$B2.64.0/21"
DOCKERD_BIP="10.$B2.128.1/24"
BERTH_BRIDGE="bdb$$"
DOCKERD_BRIDGE="bdd$$"
FORWARD_POLICY="$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')"
trap 'bench_cleanup; ct_cleanup' EXIT

bench_cleanup() {
	set +e
	for d in ${STARTED:-}; do
		local ids
		ids="$(DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" ps -aq 2>/dev/null)"
		[ -n "$ids" ] && DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" rm -f $ids >/dev/null 2>&1
	done
	if [[ " ${STARTED:-} " == *" dockerd "* ]]; then
		[ -f "$T/dockerd/dockerd.pid" ] && ct_stop "$(cat "$T/dockerd/dockerd.pid")"
		ip link del "$DOCKERD_BRIDGE" 2>/dev/null
		# What dockerd 20.10 leaves. Our bridge's and pool's rules always;
		# the DOCKER chains and the jumps to them, which every dockerd
		# shares, only when no other dockerd runs on the machine (another
		# benchmark's).
		for table in filter nat; do
			iptables-save -t "$table" | grep -E -e '^-A .*-s 10\.'"$B2"'\.' -e "^-A .*[io] $DOCKERD_BRIDGE( |\$)" | sed 's/^-A/-D/' |
				while read -r rule; do eval "iptables -t $table $rule"; done
		done
		if pgrep -x dockerd >/dev/null; then
			say "another dockerd runs: its DOCKER chains stay"
		else
			for table in filter nat; do
				iptables-save -t "$table" | grep -E '^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING) .*-j DOCKER' | sed 's/^-A/-D/' |
					while read -r rule; do eval "iptables -t $table $rule"; done
				for c in $(iptables-save -t "$table" | awk '/^:DOCKER/ {print substr($1, 2)}'); do
					iptables -t "$table" -F "$c"
				done
				for c in $(iptables-save -t "$table" | awk '/^:DOCKER/ {print substr($1, 2)}'); do
					iptables -t "$table" -X "$c"
				done
			done
			[ -n "$FORWARD_POLICY" ] && iptables -P FORWARD "$FORWARD_POLICY"
		fi
	fi
	ip link del "$BERTH_BRIDGE" 2>/dev/null
}

OUT="$REPO/_output/bench-docker"
rm -rf "$OUT"
mkdir -p "$OUT" "$T/bin"

if [ -n "${BERTH_BIN_DIR:-}" ]; then
	BIN="$(cd "$BERTH_BIN_DIR" && pwd)"
else
	BIN="$REPO/bin"
	say "building (make build)"
	make --no-print-directory -C "$REPO" build >/dev/null
fi
CNI_BIN="$REPO/_output/cni/bin"
bash "$REPO/hack/cni-plugins.sh" "$CNI_BIN" >/dev/null
(cd "$REPO" && go build -o "$T/bin/" ./hack/registry ./hack/testimages)

ct_start "$T/registry.log" "$T/bin/registry" --addr 127.0.0.1:0 --quiet
for _ in $(seq 100); do grep -q '^listening on' "$T/registry.log" && break; sleep 0.1; done
REG="$(awk '/^listening on/ {print $3}' "$T/registry.log")"
[ -n "$REG" ] || die "registry did not start: $(cat "$T/registry.log")"
"$T/bin/testimages" --registry "$REG" --only busybox >/dev/null
IMAGE="$REG/berth/busybox:latest"

start_berth() {
	local d="$T/berth"
	mkdir -p "$d/certs.d/$REG"
	printf 'server = "http://%s"\n' "$REG" >"$d/certs.d/$REG/hosts.toml"
	cat >"$d/config.toml" <<TOML
root = "$d/root"
log_level = "${BERTH_LOG_LEVEL:-info}"
state = "$d/run"
docker_listen = "$T/berth/docker.sock"
[images]
registry_config_dir = "$d/certs.d"
[cni]
bin_dirs = ["$CNI_BIN"]
[network]
default_bridge = "$BERTH_BRIDGE"
default_address_pools = [{base = "$BERTH_POOL", size = 24}]
# dockerd 20.10 runs no NRI either; its socket may be another runtime's.
[nri]
disable = true
TOML
	ct_start "$d/berthd.log" "$BIN/berthd" --config "$d/config.toml"
	echo "$LAST_PID" >"$d/berthd.pid"
	ct_wait_socket "$d/docker.sock" "$d/berthd.log"
}

start_dockerd() {
	local d="$T/dockerd"
	mkdir -p "$d"
	ip link add "$DOCKERD_BRIDGE" type bridge
	ip addr add "$DOCKERD_BIP" dev "$DOCKERD_BRIDGE"
	ip link set "$DOCKERD_BRIDGE" up
	cat >"$d/daemon.json" <<JSON
{"insecure-registries": ["127.0.0.0/8"], "bridge": "$DOCKERD_BRIDGE",
 "default-address-pools": [{"base": "$DOCKERD_POOL", "size": 24}]}
JSON
	ct_start "$d/dockerd.log" dockerd --data-root "$d/root" --exec-root "$d/exec" -H "unix://$d/docker.sock" \
		--pidfile "$d/dockerd.pid" --config-file "$d/daemon.json"
	ct_wait_socket "$d/docker.sock" "$d/dockerd.log"
}

dk() {
	local daemon="$1"
	shift
	DOCKER_HOST="unix://$T/$daemon/docker.sock" "$DOCKER" "$@"
}
now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "n/a"} else {print a[int((NR + 1) / 2)]}}'; }

STARTED=""
for daemon in "${DAEMONS[@]}"; do
	say "starting $daemon"
	"start_$daemon"
	STARTED="$STARTED $daemon"
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
	order=("${DAEMONS[@]}")
	if ((i % 2 == 0)); then
		order=()
		for ((j = ${#DAEMONS[@]} - 1; j >= 0; j--)); do order+=("${DAEMONS[j]}"); done
	fi
	for daemon in "${order[@]}"; do
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

echo
printf '%-40s %12s %12s %8s\n' "median" "berth" "dockerd" "ratio"
row() {
	local label="$1" b="$2" d="$3" ratio="n/a"
	if [[ "$b" =~ ^[0-9]+$ && "$d" =~ ^[0-9]+$ && "$d" != 0 ]]; then
		ratio="$(awk -v b="$b" -v d="$d" 'BEGIN {printf "%.2f", b / d}')"
	fi
	printf '%-40s %12s %12s %8s\n' "$label" "$b" "$d" "$ratio"
}
val() { [ -f "$OUT/$1/$2" ] && eval "$3" <"$OUT/$1/$2" || echo n/a; }
row "docker run --rm true (us)" "$(val berth run_rm_us median)" "$(val dockerd run_rm_us median)"
row "docker run -d + rm -f (us)" "$(val berth run_d_rm_us median)" "$(val dockerd run_d_rm_us median)"
row "RSS, $CONTAINERS containers (kB)" "$(val berth rss_kb cat)" "$(val dockerd rss_kb cat)"
row "PSS, $CONTAINERS containers (kB)" "$(val berth pss_kb cat)" "$(val dockerd pss_kb cat)"
row "  processes counted" "$(val berth nprocs cat)" "$(val dockerd nprocs cat)"
