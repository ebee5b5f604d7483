# Shared by hack/bench-docker.sh, hack/bench-compose.sh and
# hack/bench-network.sh (sourced after critest-images/lib.sh, not run):
# berthd and Debian's dockerd 20.10 on temp dirs, each with its own bridge
# and address pool, the same docker CLI against both, and a cleanup that
# stops only what it started and removes only its own bridges and iptables
# rules.
#
# The caller sets REPO, NAME, DOCKER (the CLI), DAEMONS (berth, dockerd or
# both) and B2 (the second octet of its own share of 10.x), then calls
# bench_init.

# bench_flag ARG: the flags all three take (--berth-only, --dockerd-only,
# --help); anything else is an error.
bench_flag() {
	case "$1" in
	--berth-only) DAEMONS=(berth) ;;
	--dockerd-only) DAEMONS=(dockerd) ;;
	-h | --help) awk 'NR > 1 && /^#/ {print; next} NR > 1 {exit}' "$0"; exit 0 ;;
	*) die "unknown argument $1 (see --help)" ;;
	esac
}

# bench_init PREFIX: installs dockerd if DAEMONS names it and it is missing,
# creates T (ct_init) and OUT (_output/NAME, emptied), picks the pools and
# the bridges (PREFIX then b or d then the PID), builds or finds the
# binaries (BIN) and the CNI plugins (CNI_BIN) and starts a registry with
# busybox (REG, IMAGE).
bench_init() {
	if [[ " ${DAEMONS[*]} " == *" dockerd "* ]] && ! command -v dockerd >/dev/null; then
		bench_install_dockerd
	fi
	BERTH_POOL="10.$B2.0.0/21"
	DOCKERD_POOL="10.$B2.64.0/21"
	DOCKERD_BIP="10.$B2.128.1/24"
	BERTH_BRIDGE="${1}b$$"
	DOCKERD_BRIDGE="${1}d$$"
	# ct_cleanup's bridge: critest0 is left to the critest run that may
	# hold it.
	CT_BRIDGE="$BERTH_BRIDGE"
	ct_init
	# dockerd rewrites FORWARD's policy and adds chains that outlive it: note
	# the policy to put it back.
	FORWARD_POLICY="$(iptables -S FORWARD | awk '$1 == "-P" {print $3}')"
	STARTED=""
	trap 'bench_cleanup; ct_cleanup' EXIT

	OUT="$REPO/_output/$NAME"
	rm -rf "$OUT"
	mkdir -p "$OUT" "$T/bin"
	ct_bin
	CNI_BIN="$REPO/_output/cni/bin"
	bash "$REPO/hack/cni-plugins.sh" "$CNI_BIN" >/dev/null
	ct_busybox
}

bench_install_dockerd() {
	say "installing Debian's docker.io (dockerd 20.10), not started as a service"
	export DEBIAN_FRONTEND=noninteractive
	# A policy-rc.d that says no keeps the package's scripts from starting
	# the service.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	apt-get install -y -q --no-install-recommends docker.io >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends docker.io >/dev/null; }
	if ((made_policy)); then rm -f "$policy"; fi
}

# bench_start DAEMON: starts berthd or dockerd (start_berth, start_dockerd).
# It is on STARTED before it starts so that a failed start is cleaned up too.
bench_start() {
	STARTED="$STARTED $1"
	"start_$1"
}

start_berth() {
	local d="$T/berth"
	mkdir -p "$d/certs.d/$REG"
	printf 'server = "http://%s"\n' "$REG" >"$d/certs.d/$REG/hosts.toml"
	cat >"$d/config.toml" <<TOML
root = "$d/root"
log_level = "${BERTH_LOG_LEVEL:-info}"
state = "$d/run"
docker_listen = "$d/docker.sock"
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
}

# dk DAEMON ARGS...: the docker CLI against berthd or dockerd.
dk() {
	local daemon="$1"
	shift
	DOCKER_HOST="unix://$T/$daemon/docker.sock" "$DOCKER" "$@"
}

# bench_cleanup: the containers and user networks on the daemons started,
# the daemons, then what they leave in the kernel; ct_cleanup stops the
# rest.
bench_cleanup() {
	set +e
	local d ids id pidfile bridges=("$BERTH_BRIDGE" "$DOCKERD_BRIDGE")
	for d in ${STARTED:-}; do
		mapfile -t ids < <(dk "$d" ps -aq 2>/dev/null)
		((${#ids[@]})) && dk "$d" rm -f "${ids[@]}" >/dev/null 2>&1
		# A network's bridge and rules outlive its daemon: the daemon
		# removes them with the network, and if it fails to, their names
		# (both daemons' br-<short ID>) say what is left to remove.
		for id in $(dk "$d" network ls -q --filter type=custom 2>/dev/null); do bridges+=("br-$id"); done
		dk "$d" network prune -f >/dev/null 2>&1
	done
	for pidfile in "$T/berth/berthd.pid" "$T/dockerd/dockerd.pid"; do
		[ -f "$pidfile" ] && ct_stop "$(cat "$pidfile")"
	done
	for d in "${bridges[@]}"; do ip link del "$d" 2>/dev/null; done
	bench_rules "${bridges[@]}"
}

# bench_rules BRIDGE...: removes the iptables rules that name our bridges,
# which both daemons leave behind. The DOCKER chains, the jumps to them and
# FORWARD's policy go too if dockerd ran, but only when no other dockerd
# runs on the machine (another benchmark's, a test's): every dockerd shares
# them. berthd's BERTH chains are shared the same way and stay.
bench_rules() {
	local table rule c p other=0 ours
	ours="$(IFS='|'; echo "$*")"
	for table in filter nat; do
		iptables-save -t "$table" | grep -E "^-A .*[io] ($ours)( |\$)" | sed 's/^-A/-D/' |
			while read -r rule; do eval "iptables -t $table $rule"; done
	done
	[[ " ${STARTED:-} " == *" dockerd "* ]] || return 0
	# ct_alive: ours may still be a zombie, not yet reaped.
	for p in $(pgrep -x dockerd); do
		if ct_alive "$p"; then other=1; fi
	done
	if ((other)); then
		say "another dockerd runs: its DOCKER chains stay"
		return 0
	fi
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
	[ -z "$FORWARD_POLICY" ] || iptables -P FORWARD "$FORWARD_POLICY"
}

# bench_order I: DAEMONS in their order for an odd I, reversed for an even
# one, in ORDER: interleaved runs, so that the machine's drift hits both
# alike.
bench_order() {
	ORDER=("${DAEMONS[@]}")
	if (($1 % 2 == 0)); then
		ORDER=()
		local j
		for ((j = ${#DAEMONS[@]} - 1; j >= 0; j--)); do ORDER+=("${DAEMONS[j]}"); done
	fi
}

now_us() { echo $(($(date +%s%N) / 1000)); }
median() { sort -n | awk '{a[NR] = $1} END {if (NR == 0) {print "n/a"} else {print a[int((NR + 1) / 2)]}}'; }

# table WIDTH TITLE: the results' header, TITLE in a column WIDTH wide; row
# LABEL BERTH DOCKERD then prints a line with the ratio berth/dockerd.
table() {
	TABLE_WIDTH="$1"
	echo
	printf "%-${TABLE_WIDTH}s %12s %12s %8s\n" "$2" "berth" "dockerd" "ratio"
}
row() {
	local label="$1" b="$2" d="$3" ratio="n/a"
	if [[ "$b" =~ ^[0-9]+$ && "$d" =~ ^[0-9]+$ && "$d" != 0 ]]; then
		ratio="$(awk -v b="$b" -v d="$d" 'BEGIN {printf "%.2f", b / d}')"
	fi
	printf "%-${TABLE_WIDTH}s %12s %12s %8s\n" "$label" "$b" "$d" "$ratio"
}
# val DAEMON FILE FILTER: OUT/DAEMON/FILE through FILTER (a command), or
# n/a when that daemon did not run.
val() { [ -f "$OUT/$1/$2" ] && eval "$3" <"$OUT/$1/$2" || echo n/a; }
