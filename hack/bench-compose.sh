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
# bridges and the iptables chains dockerd added.
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-compose
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh

ROUNDS=7 CLIENT=docker-compose DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--rounds) ROUNDS="$2"; shift ;;
	--client) CLIENT="$2"; shift ;;
	--berth-only) DAEMONS=(berth) ;;
	--dockerd-only) DAEMONS=(dockerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
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
# Our own share of 10.x (10.240-253: the e2e tests use 10.100-199, the
# other benchmarks 10.150-239) and our own bridge names.
B2=$((240 + $$ % 14))
BERTH_POOL="10.$B2.0.0/21"
DOCKERD_POOL="10.$B2.64.0/21"
DOCKERD_BIP="10.$B2.128.1/24"
BERTH_BRIDGE="bcb$$"
DOCKERD_BRIDGE="bcd$$"
FORWARD_POLICY="$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')"
trap 'bench_cleanup; ct_cleanup' EXIT

bench_cleanup() {
	set +e
	for d in ${STARTED:-}; do
		compose "$d" down -v >/dev/null 2>&1
		local ids
		ids="$(DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" ps -aq 2>/dev/null)"
		[ -n "$ids" ] && DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" rm -f $ids >/dev/null 2>&1
	done
	if [[ " ${STARTED:-} " == *" dockerd "* ]]; then
		[ -f "$T/dockerd/dockerd.pid" ] && ct_stop "$(cat "$T/dockerd/dockerd.pid")"
		ip link del "$DOCKERD_BRIDGE" 2>/dev/null
		# What dockerd 20.10 leaves: its chains, the jumps to them, the
		# rules of its compose networks' bridges.
		for table in filter nat; do
			iptables-save -t "$table" | grep -E '^-A (FORWARD|PREROUTING|OUTPUT|POSTROUTING) .*-j DOCKER' | sed 's/^-A/-D/' |
				while read -r rule; do eval "iptables -t $table $rule"; done
			iptables-save -t "$table" | grep -E -e '^-A POSTROUTING .*-s 10\.'"$B2"'\.' -e "^-A .*[io] $DOCKERD_BRIDGE( |\$)" | sed 's/^-A/-D/' |
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
	ip link del "$BERTH_BRIDGE" 2>/dev/null
}

OUT="$REPO/_output/bench-compose"
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
dk() {
	local daemon="$1"
	shift
	DOCKER_HOST="unix://$T/$daemon/docker.sock" "$DOCKER" "$@"
}
# running DAEMON: how many of the project's containers run (one API call).
running() {
	curl -sf --unix-socket "$T/$1/docker.sock" -G "http://localhost/containers/json" \
		--data-urlencode 'filters={"label":["com.docker.compose.project=bench"],"status":["running"]}' | grep -o '"Id"' | wc -l
}
now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "n/a"} else {print a[int((NR + 1) / 2)]}}'; }

mkdir -p "$T/dockercfg"
if [ "$CLIENT" = plugin ]; then
	printf '{"cliPluginsExtraDirs": ["%s"]}\n' "$(dirname "$PLUGIN")" >"$T/dockercfg/config.json"
fi

STARTED=""
port=$((20000 + $$ % 20000))
for daemon in "${DAEMONS[@]}"; do
	say "starting $daemon"
	"start_$daemon"
	STARTED="$STARTED $daemon"
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
	order=("${DAEMONS[@]}")
	if ((i % 2 == 0)); then
		order=()
		for ((j = ${#DAEMONS[@]} - 1; j >= 0; j--)); do order+=("${DAEMONS[j]}"); done
	fi
	for daemon in "${order[@]}"; do
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

echo
printf '%-44s %12s %12s %8s\n' "median of $ROUNDS ($CLIENT)" "berth" "dockerd" "ratio"
row() {
	local label="$1" b="$2" d="$3" ratio="n/a"
	if [[ "$b" =~ ^[0-9]+$ && "$d" =~ ^[0-9]+$ && "$d" != 0 ]]; then
		ratio="$(awk -v b="$b" -v d="$d" 'BEGIN {printf "%.2f", b / d}')"
	fi
	printf '%-44s %12s %12s %8s\n' "$label" "$b" "$d" "$ratio"
}
val() { [ -f "$OUT/$1/$2" ] && median <"$OUT/$1/$2" || echo n/a; }
row "up -d, 3 services, to all running (us)" "$(val berth up_us)" "$(val dockerd up_us)"
row "down -v (us)" "$(val berth down_us)" "$(val dockerd down_us)"
row "  down -v with nothing to do (client floor, us)" "$(val berth idle_us)" "$(val dockerd idle_us)"
