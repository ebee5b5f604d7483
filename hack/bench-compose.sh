#!/usr/bin/env bash
# Compose benchmark: the same compose client against berthd and against
# Debian's dockerd 20.10 (apt docker.io, installed if missing, never as a
# service), both on temp dirs, both running at once.
#
#   hack/bench-compose.sh [--rounds N] [--client docker-compose|plugin]
#                         [--berth-only | --dockerd-only]
#
# The project: three services from the same busybox image, present on both
# daemons before the first round (no pull, no build): web (httpd with a
# published port), redis (an nc server with a named volume) and worker
# (a loop); web and worker depend on redis; one default network.
# Each round, for each daemon (the order alternates so that the machine's
# drift hits both alike):
#   up      `up -d` until all three containers run (compose's wall time,
#           then the Engine API's list is polled until three run);
#   down    `down -v` (containers, network and volume removed);
#   idle    `down -v` again, with nothing left to remove: the client's own
#           cost (start-up, config, the API's lists), the floor under both
#           daemons' down times.
# One round first, not measured, warms both. --rounds defaults to 7; the
# medians and the ratios berth/dockerd are printed (goal <= 0.5).
# --client: docker-compose 1.29 (Debian's, the default) or the compose v5
# plugin under the stock docker CLI (make deps builds it into
# _output/tools/cli-plugins). Raw data: _output/bench-compose/. KEEP=1
# keeps the temp dir. Needs root. Stops only what it started, removes its
# networks, bridges and their iptables rules, and dockerd's chains when no
# other dockerd runs (hack/lib-docker-bench.sh).
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-compose
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh
# shellcheck source=lib-docker-bench.sh
. hack/lib-docker-bench.sh

ROUNDS=7 CLIENT=docker-compose DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--rounds) ROUNDS="$2"; shift ;;
	--client) CLIENT="$2"; shift ;;
	*) bench_flag "$1" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the daemons mount, create namespaces, bridges and rules)"
command -v curl >/dev/null || die "needs curl (the Engine API is polled with it)"
# The stock CLI (28.x) for the plugin and for docker-compose 1.29's builds.
DOCKER="${DOCKER:-/usr/local/bin/docker}"
[ -x "$DOCKER" ] || DOCKER="$(command -v docker || true)"
[ -n "$DOCKER" ] || die "no docker CLI (hack/install-deps.sh)"
case "$CLIENT" in
docker-compose)
	COMPOSE=("$(command -v docker-compose || true)")
	[ -n "${COMPOSE[0]}" ] || die "no docker-compose (hack/install-deps.sh installs Debian's 1.29)"
	;;
plugin)
	PLUGIN="${BERTH_COMPOSE_PLUGIN:-$REPO/_output/tools/cli-plugins/docker-compose}"
	[ -x "$PLUGIN" ] || die "no compose v5 plugin at $PLUGIN (make deps)"
	COMPOSE=("$DOCKER" compose)
	;;
*) die "--client: docker-compose or plugin, not $CLIENT" ;;
esac

# Our own share of 10.x (10.240-253: the e2e tests use 10.100-199, the
# other benchmarks 10.150-239) and our own bridge names.
B2=$((240 + $$ % 14))
bench_init bc

# The project, one directory per daemon (each its own web port).
write_project() {
	local dir="$T/$1/project"
	mkdir -p "$dir"
	cat >"$dir/compose.yaml" <<YAML
services:
  web:
    image: $IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 80 & wait"]
    ports: ["$2:80"]
    depends_on: [redis]
  redis:
    image: $IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; nc -ll -p 6379 -e sh -c 'echo 1' & wait"]
    volumes: [data:/data]
  worker:
    image: $IMAGE
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1 & wait; done"]
    depends_on: [redis]
volumes:
  data: {}
YAML
}

compose() {
	local daemon="$1"
	shift
	(cd "$T/$daemon/project" && DOCKER_HOST="unix://$T/$daemon/docker.sock" DOCKER_CONFIG="$T/dockercfg" \
		PATH="$(dirname "$DOCKER"):$PATH" "${COMPOSE[@]}" -p bench "$@")
}
# running DAEMON: how many of the project's containers run (one API call).
running() {
	curl -sf --unix-socket "$T/$1/docker.sock" -G "http://localhost/containers/json" \
		--data-urlencode 'filters={"label":["com.docker.compose.project=bench"],"status":["running"]}' | grep -o '"Id"' | wc -l
}

mkdir -p "$T/dockercfg"
if [ "$CLIENT" = plugin ]; then
	printf '{"cliPluginsExtraDirs": ["%s"]}\n' "$(dirname "$PLUGIN")" >"$T/dockercfg/config.json"
fi

port=$((20000 + $$ % 20000))
for daemon in "${DAEMONS[@]}"; do
	say "starting $daemon"
	bench_start "$daemon"
	dk "$daemon" pull -q "$IMAGE" >/dev/null
	write_project "$daemon" "$port"
	port=$((port + 1))
	# One round first, not measured: caches warm for both.
	compose "$daemon" up -d >/dev/null 2>&1
	compose "$daemon" down -v >/dev/null 2>&1
	mkdir -p "$OUT/$daemon"
	: >"$OUT/$daemon/up_us"
	: >"$OUT/$daemon/down_us"
	: >"$OUT/$daemon/idle_us"
done

say "$ROUNDS rounds of up -d and down -v with $CLIENT, interleaved"
for i in $(seq "$ROUNDS"); do
	bench_order "$i"
	for daemon in "${ORDER[@]}"; do
		t0="$(now_us)"
		compose "$daemon" up -d >>"$OUT/$daemon/compose.log" 2>&1 || die "$daemon: up -d failed (see $OUT/$daemon/compose.log)"
		for _ in $(seq 200); do
			[ "$(running "$daemon")" = 3 ] && break
			sleep 0.05
		done
		[ "$(running "$daemon")" = 3 ] || die "$daemon: the project's three containers are not running after up -d"
		echo $(($(now_us) - t0)) >>"$OUT/$daemon/up_us"
		t0="$(now_us)"
		compose "$daemon" down -v >>"$OUT/$daemon/compose.log" 2>&1 || die "$daemon: down -v failed (see $OUT/$daemon/compose.log)"
		echo $(($(now_us) - t0)) >>"$OUT/$daemon/down_us"
		left="$(dk "$daemon" ps -aq | wc -l) $(dk "$daemon" volume ls -q | wc -l)"
		[ "$left" = "0 0" ] || die "$daemon: down -v left containers and volumes: $left"
		# The client's own floor: down -v with nothing left to do.
		t0="$(now_us)"
		compose "$daemon" down -v >>"$OUT/$daemon/compose.log" 2>&1 || die "$daemon: idle down -v failed (see $OUT/$daemon/compose.log)"
		echo $(($(now_us) - t0)) >>"$OUT/$daemon/idle_us"
	done
	echo "  round $i: up $(tail -n1 "$OUT/berth/up_us" 2>/dev/null || echo -) / $(tail -n1 "$OUT/dockerd/up_us" 2>/dev/null || echo -) us," \
		"down $(tail -n1 "$OUT/berth/down_us" 2>/dev/null || echo -) / $(tail -n1 "$OUT/dockerd/down_us" 2>/dev/null || echo -) us (berth / dockerd)"
done

table 44 "median of $ROUNDS ($CLIENT)"
row "up -d, 3 services, to all running (us)" "$(val berth up_us median)" "$(val dockerd up_us median)"
row "down -v (us)" "$(val berth down_us median)" "$(val dockerd down_us median)"
row "  down -v with nothing to do (client floor, us)" "$(val berth idle_us median)" "$(val dockerd idle_us median)"
