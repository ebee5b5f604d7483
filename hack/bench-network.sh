#!/usr/bin/env bash
# Network benchmark: the same stock docker CLI against berthd and against
# Debian's dockerd 20.10 (apt docker.io, installed if missing, never as a
# service), both on temp dirs, one after the other in one run.
#
#   hack/bench-network.sh [--starts N] [--queries N] [--rounds N]
#                         [--berth-only | --dockerd-only]
#
# For each daemon, on a user-defined network of its own:
#   start    N times (default 20) `docker run -d --network benchnet busybox
#            sleep 600`, the CLI's wall time (create + start + attach), then
#            the containers are removed;
#   lookup   a container resolves another one's name: --queries (default
#            1000) sequential A queries from inside it (hack/dnsbench, a
#            static Go binary bind-mounted in), median and p99, --rounds
#            times (default 3; the median of the medians is reported);
#   flood    one container sends 10k queries a second for 8 s while another
#            does 500 lookups: its failures, median and p99.
# Prints the medians and the ratios berth/dockerd (goals: start <= 0.5,
# lookup <= 0.5). Raw data: _output/bench-network/. KEEP=1 keeps the temp
# dir. Needs root. Stops only what it started; removes its networks,
# bridges and their iptables rules, and dockerd's chains when no other
# dockerd runs (hack/lib-docker-bench.sh).
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-network
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# shellcheck source=lib-docker-bench.sh
. hack/lib-docker-bench.sh

STARTS=20 QUERIES=1000 ROUNDS=3 DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--starts) STARTS="$2"; shift ;;
	--queries) QUERIES="$2"; shift ;;
	--rounds) ROUNDS="$2"; shift ;;
	*) bench_flag "$1" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the daemons mount, create namespaces, bridges and rules)"
DOCKER="${DOCKER:-$(command -v docker || true)}"
[ -n "$DOCKER" ] || die "no docker CLI (hack/install-deps.sh)"

# Our own share of 10.x: a /21 per daemon, and the daemons' own names.
B2=$((200 + $$ % 40))
# benchnet's subnet on each daemon, in its pool.
declare -A BENCH_NET=([berth]="10.$B2.8.0/24" [dockerd]="10.$B2.72.0/24")
bench_init bn
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/bin/dnsbench" ./hack/dnsbench)

for daemon in "${DAEMONS[@]}"; do
	say "$daemon"
	bench_start "$daemon"
	raw="$OUT/$daemon"
	mkdir -p "$raw"
	dk "$daemon" pull -q "$IMAGE" >/dev/null
	dk "$daemon" network create --subnet "${BENCH_NET[$daemon]}" benchnet >/dev/null
	# One run first, not measured: caches warm for both.
	dk "$daemon" rm -f "$(dk "$daemon" run -d --network benchnet "$IMAGE" true)" >/dev/null

	say "$daemon: $STARTS starts on a user network"
	: >"$raw/start_us"
	for i in $(seq "$STARTS"); do
		t0="$(now_us)"
		dk "$daemon" run -d --network benchnet --name "s$i" "$IMAGE" sleep 600 >/dev/null
		echo $(($(now_us) - t0)) >>"$raw/start_us"
	done
	dk "$daemon" rm -f $(seq -f 's%g' "$STARTS") >/dev/null

	say "$daemon: $ROUNDS x $QUERIES lookups of a container's name from another"
	dk "$daemon" run -d --network benchnet --name target "$IMAGE" sleep 600 >/dev/null
	: >"$raw/lookup"
	for _ in $(seq "$ROUNDS"); do
		dk "$daemon" run --rm --network benchnet -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench lookup -n "$QUERIES" target | tee -a "$raw/lookup"
	done

	say "$daemon: a 10k qps flood from one container while another resolves"
	dk "$daemon" run -d --network benchnet --name flooder -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench flood -qps 10000 -d 8s target >/dev/null
	sleep 1
	dk "$daemon" run --rm --network benchnet -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench lookup -n 500 target | tee "$raw/flood_victim"
	dk "$daemon" wait flooder >/dev/null
	dk "$daemon" logs flooder >"$raw/flooder" 2>&1 || true
	dk "$daemon" rm -f target flooder >/dev/null
	dk "$daemon" network rm benchnet >/dev/null
done

field() { sed -n "s/.*$1=\([-0-9]*\).*/\1/p"; }
table 34 median
row "start on a user network (us)" "$(val berth start_us median)" "$(val dockerd start_us median)"
row "lookup, median of medians (us)" "$(val berth lookup 'field median_us | median')" "$(val dockerd lookup 'field median_us | median')"
row "lookup p99, median (us)" "$(val berth lookup 'field p99_us | median')" "$(val dockerd lookup 'field p99_us | median')"
row "lookup during a flood (us)" "$(val berth flood_victim 'field median_us')" "$(val dockerd flood_victim 'field median_us')"
row "  p99 during the flood (us)" "$(val berth flood_victim 'field p99_us')" "$(val dockerd flood_victim 'field p99_us')"
row "  failed of 500 during the flood" "$(val berth flood_victim 'field failed')" "$(val dockerd flood_victim 'field failed')"
for d in "${DAEMONS[@]}"; do
	[ -f "$OUT/$d/flooder" ] && echo "$d flooder: $(cat "$OUT/$d/flooder")"
done
