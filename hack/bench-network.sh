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
# bridges and the iptables chains dockerd added.
# BERTH_LOG_LEVEL=debug runs berthd with its per-step timings (with KEEP=1,
# in the temp dir's berth/berthd.log).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"
NAME=bench-network
# shellcheck source=critest-images/lib.sh
. hack/critest-images/lib.sh

STARTS=20 QUERIES=1000 ROUNDS=3 DAEMONS=(berth dockerd)
while (($#)); do
	case "$1" in
	--starts) STARTS="$2"; shift ;;
	--queries) QUERIES="$2"; shift ;;
	--rounds) ROUNDS="$2"; shift ;;
	--berth-only) DAEMONS=(berth) ;;
	--dockerd-only) DAEMONS=(dockerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
	shift
done
[ "$(id -u)" = 0 ] || die "run as root (the daemons mount, create namespaces, bridges and rules)"
DOCKER="${DOCKER:-$(command -v docker || true)}"
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
# Our own share of 10.x: a /21 per daemon, and the daemons' own names.
B2=$((200 + $$ % 40))
BERTH_POOL="10.$B2.0.0/21"
DOCKERD_POOL="10.$B2.64.0/21"
DOCKERD_BIP="10.$B2.128.1/24"
BENCH_NET_BERTH="10.$B2.8.0/24"
BENCH_NET_DOCKERD="10.$B2.72.0/24"
BERTH_BRIDGE="bnb$$"
DOCKERD_BRIDGE="bnd$$"
# dockerd rewrites FORWARD's policy and adds chains that outlive it: note
# the policy to put it back.
FORWARD_POLICY="$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')"
trap 'bench_cleanup; ct_cleanup' EXIT

bench_cleanup() {
	set +e
	for d in ${STARTED:-}; do
		DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" rm -f $(DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" ps -aq 2>/dev/null) >/dev/null 2>&1
		DOCKER_HOST="unix://$T/$d/docker.sock" "$DOCKER" network rm benchnet >/dev/null 2>&1
	done
	if [[ " ${STARTED:-} " == *" dockerd "* ]]; then
		[ -f "$T/dockerd/dockerd.pid" ] && ct_stop "$(cat "$T/dockerd/dockerd.pid")"
		ip link del "$DOCKERD_BRIDGE" 2>/dev/null
		# What dockerd 20.10 leaves: its chains and the jumps to them.
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

OUT="$REPO/_output/bench-network"
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
(cd "$REPO" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$T/bin/dnsbench" ./hack/dnsbench &&
	go build -o "$T/bin/" ./hack/registry ./hack/testimages)

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
[nri]
disable = true
[network]
default_bridge = "$BERTH_BRIDGE"
default_address_pools = [{base = "$BERTH_POOL", size = 24}]
TOML
	ct_start "$d/berthd.log" "$BIN/berthd" --config "$d/config.toml"
	ct_wait_socket "$d/docker.sock" "$d/berthd.log"
	BENCH_SUBNET="$BENCH_NET_BERTH"
}

start_dockerd() {
	local d="$T/dockerd"
	mkdir -p "$d"
	# Its default bridge is one of ours (-b), not docker0, which another
	# dockerd on this machine may hold.
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
	BENCH_SUBNET="$BENCH_NET_DOCKERD"
}

median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "n/a"} else {print a[int((NR + 1) / 2)]}}'; }
now_ms() { echo $(($(date +%s%N) / 1000)); }

STARTED=""
for daemon in "${DAEMONS[@]}"; do
	say "$daemon"
	"start_$daemon"
	STARTED="$STARTED $daemon"
	export DOCKER_HOST="unix://$T/$daemon/docker.sock"
	dk() { "$DOCKER" "$@"; }
	raw="$OUT/$daemon"
	mkdir -p "$raw"
	dk pull -q "$IMAGE" >/dev/null
	dk network create --subnet "$BENCH_SUBNET" benchnet >/dev/null
	# One run first, not measured: caches warm for both.
	dk rm -f "$(dk run -d --network benchnet "$IMAGE" true)" >/dev/null

	say "$daemon: $STARTS starts on a user network"
	: >"$raw/start_us"
	for i in $(seq "$STARTS"); do
		t0="$(now_ms)"
		dk run -d --network benchnet --name "s$i" "$IMAGE" sleep 600 >/dev/null
		echo $(($(now_ms) - t0)) >>"$raw/start_us"
	done
	dk rm -f $(seq -f 's%g' "$STARTS") >/dev/null

	say "$daemon: $ROUNDS x $QUERIES lookups of a container's name from another"
	dk run -d --network benchnet --name target "$IMAGE" sleep 600 >/dev/null
	: >"$raw/lookup"
	for _ in $(seq "$ROUNDS"); do
		dk run --rm --network benchnet -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench lookup -n "$QUERIES" target | tee -a "$raw/lookup"
	done

	say "$daemon: a 10k qps flood from one container while another resolves"
	dk run -d --network benchnet --name flooder -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench flood -qps 10000 -d 8s target >/dev/null
	sleep 1
	dk run --rm --network benchnet -v "$T/bin/dnsbench:/dnsbench:ro" "$IMAGE" /dnsbench lookup -n 500 target | tee "$raw/flood_victim"
	dk wait flooder >/dev/null
	dk logs flooder >"$raw/flooder" 2>&1 || true
	dk rm -f target flooder >/dev/null
	dk network rm benchnet >/dev/null
	unset DOCKER_HOST
done

field() { sed -n "s/.*$1=\([-0-9]*\).*/\1/p"; }
echo
printf '%-34s %12s %12s %8s\n' "median" "berth" "dockerd" "ratio"
row() {
	local label="$1" b="$2" d="$3" ratio="n/a"
	if [[ "$b" =~ ^[0-9]+$ && "$d" =~ ^[0-9]+$ && "$d" != 0 ]]; then
		ratio="$(awk -v b="$b" -v d="$d" 'BEGIN {printf "%.2f", b / d}')"
	fi
	printf '%-34s %12s %12s %8s\n' "$label" "$b" "$d" "$ratio"
}
val() { [ -f "$OUT/$1/$2" ] && eval "$3" <"$OUT/$1/$2" || echo n/a; }
row "start on a user network (us)" "$(val berth start_us median)" "$(val dockerd start_us median)"
row "lookup, median of medians (us)" "$(val berth lookup 'field median_us | median')" "$(val dockerd lookup 'field median_us | median')"
row "lookup p99, median (us)" "$(val berth lookup 'field p99_us | median')" "$(val dockerd lookup 'field p99_us | median')"
row "lookup during a flood (us)" "$(val berth flood_victim 'field median_us')" "$(val dockerd flood_victim 'field median_us')"
row "  p99 during the flood (us)" "$(val berth flood_victim 'field p99_us')" "$(val dockerd flood_victim 'field p99_us')"
row "  failed of 500 during the flood" "$(val berth flood_victim 'field failed')" "$(val dockerd flood_victim 'field failed')"
for d in "${DAEMONS[@]}"; do
	[ -f "$OUT/$d/flooder" ] && echo "$d flooder: $(cat "$OUT/$d/flooder")"
done
